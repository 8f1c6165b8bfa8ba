"""Config of the ``track`` section: how long and how wide masks persist between detections."""

from pydantic import Field

from daemon.schema import StrictModel


class TrackConfig(StrictModel):
    hold_s: float = Field(
        2.0,
        ge=0,
        le=60,
        description="keep masking a face this long after it is lost; the tracker never holds "
        "less than gate.deadline_ms nor than the recent gap between detections, so a small "
        "value cannot open a gap between two detections of a face",
    )
    iou_match: float = Field(0.2, gt=0, le=1, description="IoU to match a detection to a track")
    motion_growth: float = Field(
        1.5,
        ge=0,
        le=10,
        description="grow a lost track by its speed times the time since its last hit",
    )
    lost_growth_per_s: float = Field(
        0.25, ge=0, le=10, description="extra relative size added per second a track goes unseen"
    )
