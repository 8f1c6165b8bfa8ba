"""Config of the ``mask`` section: how faces and privacy zones are hidden."""

from typing import Annotated, Literal

from pydantic import Field, field_validator

from daemon.schema import StrictModel

MAX_COORD = 100_000  # px: far beyond any camera; larger values overflowed OpenCV on frame 1
Coord = Annotated[int, Field(ge=0, le=MAX_COORD)]
Channel = Annotated[int, Field(ge=0, le=255)]


class ZoneConfig(StrictModel):
    name: str = Field("zone", max_length=64)
    points: list[tuple[Coord, Coord]] = Field(
        max_length=1000, description="polygon corners in frame pixels, 0 to 100000"
    )

    @field_validator("points")
    @classmethod
    def _polygon(cls, v: list[tuple[Coord, Coord]]) -> list[tuple[Coord, Coord]]:
        if len(v) < 3:
            raise ValueError("a zone needs at least 3 points")
        return v


class MaskConfig(StrictModel):
    style: Literal["blur", "mosaic", "fill"] = "blur"
    shape: Literal["ellipse", "box"] = "ellipse"
    margin: float = Field(1.35, ge=1.0, le=3.0, description="box grown by this factor, centred")
    color: tuple[Channel, Channel, Channel] = Field(
        (0, 0, 0), description="fill colour, B G R, 0 to 255 each"
    )
    blur_cells: int = Field(
        4,
        ge=2,
        le=8,
        description="blur: detail kept across a masked box; the kernel grows with the box",
    )
    mosaic_cells: int = Field(
        6, ge=2, le=8, description="mosaic: cells across the larger side of a masked box"
    )
    min_score: float = Field(
        0.0, ge=0, le=1, description="detections scoring below this are not masked"
    )
    video_hold_frames: int = Field(
        2,
        ge=0,
        le=25,
        description="veilcam mask, videos: a face found on frame t is also masked on the frames "
        "t-N .. t+N (the live service uses its tracker instead)",
    )
    zone_style: Literal["fill", "blur", "mosaic"] = Field(
        "fill", description="how privacy zones are hidden"
    )
    zones: list[ZoneConfig] = Field(default_factory=list, max_length=64)
    people: Literal["heads", "bodies", "off"] = Field(
        "heads",
        description="tracked people (detect.people): mask their heads (top 22 % of the box, "
        "60 % of its width), their whole box, or nothing (events only)",
    )

    @field_validator("people", mode="before")
    @classmethod
    def _off(cls, v: object) -> object:
        """YAML 1.1 reads a bare ``off`` as false: take it as "off", as the user wrote it."""
        return "off" if v is False else v
