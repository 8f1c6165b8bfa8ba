"""Config of the ``recording`` section: segments, modes and retention."""

from pathlib import Path
from typing import Literal

from pydantic import Field

from daemon.schema import StrictModel


class RecordingConfig(StrictModel):
    enabled: bool = Field(True, description="write segments (set_recording/MQTT can pause it)")
    path: Path = Field(Path("/var/lib/veilcam/recordings"), description="recordings/<camera>/…")
    state_file: Path | None = Field(
        None, description="privacy/recording switches; default <path>/../state.json"
    )
    mode: Literal["continuous", "events"] = "continuous"
    segment_s: float = Field(60.0, ge=2, le=3600, description="length of one file")
    pre_roll_s: float = Field(
        5.0, ge=0, le=300, description="events mode: masked frames kept before"
    )
    post_roll_s: float = Field(10.0, ge=0, le=3600, description="events mode: keep recording after")
    encoder: Literal["auto", "libx264", "h264_v4l2m2m"] = "auto"
    crf: int = Field(23, ge=0, le=51)
    keyframe_s: float = Field(2.0, gt=0, le=2.0, description="max seconds between keyframes")
    retain_days: float = Field(7.0, gt=0, le=3650)
    max_gb: float | None = Field(
        None, gt=0, le=1_000_000, description="delete oldest above this size"
    )
    min_free_percent: float = Field(10.0, ge=0, lt=100, description="keep this much disk free")

    def resolved_state_file(self) -> Path:
        return self.state_file or self.path.parent / "state.json"
