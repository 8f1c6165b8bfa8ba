"""Config of the ``detect`` section: which backend finds faces, and on what schedule."""

from pathlib import Path
from typing import Literal

from pydantic import Field

from daemon.schema import StrictModel


class DetectConfig(StrictModel):
    backend: Literal["centerface", "blazeface"] = "centerface"
    models_dir: Path | None = Field(None, description="where the .tflite files are; auto if unset")
    threads: int = Field(2, ge=1, le=16, description="interpreter threads (XNNPACK)")
    score_threshold: float = Field(0.4, gt=0, lt=1)
