"""Config of the ``track`` section: how long and how wide masks persist between detections."""

from pydantic import Field

from daemon.schema import StrictModel


class TrackConfig(StrictModel):
    hold_s: float = Field(2.0, ge=0, description="keep masking a face this long after it is lost")
    iou_match: float = Field(0.2, gt=0, le=1, description="IoU to match a detection to a track")
    motion_growth: float = Field(
        1.5, ge=0, description="grow a lost track by its speed times the time since its last hit"
    )
    lost_growth_per_s: float = Field(
        0.25, ge=0, description="extra relative size added per second a track goes unseen"
    )
