"""Config of ``detect.people``: the person (and car, dog, cat) detector beside the face model.

People are detected for two reasons: to mask heads the face detector misses (``mask.people``)
and to tell Home Assistant who or what is in view. Cars, dogs and cats are for events only and
are never masked.
"""

from typing import Literal

from pydantic import Field

from daemon.schema import StrictModel

OtherLabel = Literal["car", "dog", "cat"]


FULL_PEOPLE_TILES = 2  # the "full" detection profile's tiles, and a config's with no profile


class PeopleConfig(StrictModel):
    enabled: bool = Field(
        True, description="run the person detector (needed by mask.people and person events)"
    )
    model: Literal["ssd_mobilenetv2_oidv4"] = Field(
        "ssd_mobilenetv2_oidv4", description="model id in models/manifest.yaml"
    )
    score_threshold: float = Field(
        0.4,
        gt=0,
        lt=1,
        description="person score to keep a box (clear people score 0.4-0.6; 0.4 calibrated on "
        "people_pets09: recall as at 0.3, a quarter of the false boxes)",
    )
    other_threshold: float = Field(
        0.4, gt=0, lt=1, description="score to keep a car, dog or cat box (events only)"
    )
    labels: list[OtherLabel] = Field(
        default_factory=lambda: ["car", "dog", "cat"],
        max_length=3,
        description="other labels reported to Home Assistant (never masked)",
    )
    every: int = Field(
        4,
        ge=1,
        le=10,
        description="run the person model on every Nth detector run; tracks carry people in "
        "between (the face model runs on every run)",
    )
    max_gap_s: float = Field(
        1.0,
        ge=0.05,
        le=5.0,
        description="the service also runs the person model once this much video time has "
        "passed since its last pass (sparse passes make tracked heads grow: the tracker widens "
        "a mask by the distance a head may have moved)",
    )
    tiles: int | None = Field(
        None,
        ge=1,
        le=4,
        description="besides the whole frame, an N x N grid of overlapping tiles (1: whole "
        "frame only); small and far people need the tiles. null: the detect profile's (full: 2)",
    )
    tile_overlap: float = Field(
        0.4, ge=0, le=0.5, description="share of a tile's side shared with its neighbour"
    )
    tile_min_side: int = Field(
        480,
        ge=0,
        le=100_000,
        description="frames whose shorter side is below this get no tiles (0: always tile)",
    )
    nms_iou: float = Field(0.45, gt=0, le=1, description="overlap above which the weaker box goes")
    face_veto: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="drop a face scoring below this whose centre lies in no person box (grown "
        "by a quarter on each side) and which does not touch the frame edge; 0: off",
    )


def object_labels(cfg: PeopleConfig) -> list[str]:
    """The labels the person detector reports: events per label (empty when it is off)."""
    return ["person", *cfg.labels] if cfg.enabled else []
