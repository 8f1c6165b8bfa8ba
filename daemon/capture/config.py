"""Config of the ``camera`` section: where frames come from."""

from typing import Literal

from pydantic import Field

from daemon.schema import StrictModel


class CameraConfig(StrictModel):
    name: str = Field(
        "camera", pattern=r"^[a-z0-9_-]{1,64}$", description="id used in paths/topics"
    )
    source: str = Field(
        "auto",
        description="auto | picamera2 | /dev/videoN | rtsp://… | http(s)://… | a video file",
    )
    width: int | None = Field(
        None, gt=0, le=16384, description="requested capture width (picamera2/V4L2)"
    )
    height: int | None = Field(None, gt=0, le=16384)
    fps: float | None = Field(
        None, gt=0, le=240, description="requested capture rate (picamera2/V4L2)"
    )
    decoder: Literal["auto", "software", "h264_v4l2m2m"] = Field(
        "auto",
        description="H.264 from files and network cameras: auto (the Pi 4's hardware decoder "
        "where it opens, else software) | software | h264_v4l2m2m",
    )
    loop: bool = Field(True, description="file sources: start again at the end")
    realtime: bool = Field(True, description="file sources: play at the file's own frame rate")
    open_timeout_s: float = Field(
        10.0, gt=0, le=600, description="network sources: connect/read timeout"
    )
    retry_initial_s: float = Field(1.0, gt=0, le=3600, description="first wait after a lost source")
    retry_max_s: float = Field(30.0, gt=0, le=3600, description="longest wait between retries")
