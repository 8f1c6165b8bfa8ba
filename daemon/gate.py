"""Fail-closed gate config (rule 2): what happens to a frame whose detection is missing or late."""

from typing import Literal

from pydantic import Field

from daemon.schema import StrictModel


class GateConfig(StrictModel):
    on_missing: Literal["obscure", "drop"] = Field(
        "obscure", description="a frame without a fresh detection result is blanked, or dropped"
    )
    deadline_ms: float = Field(
        500.0, gt=0, description="a detection result older than this (capture to capture) is late"
    )
