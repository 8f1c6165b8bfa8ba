"""The fail-closed gate (rule 2): a frame goes out masked only when a detection covers it.

Frames wait in memory until a successful detection result for that frame or a later one is in.
Then the tracker knows where every face was before and after the frame. A frame is covered by
the first successful result ``r`` at or after it when

* ``r`` ran on a frame at most ``deadline_ms`` later in the video (``r.pts - frame.pts``), and
* ``r`` was ready at most ``deadline_ms`` after the frame was captured (``r.done - captured``).

A frame still uncovered ``deadline_ms`` after capture, or whose covering result is too far or too
late, is obscured (blacked out) or dropped, per ``on_missing``, and counted. A failed detector
run covers nothing; the frames around it wait for the next successful run like any other.

A file played with ``--fast`` has no wall clock to keep up with: there the gate ignores
capture-to-result time (``wall_clock=False``) and the pipeline holds the file back so that the
detector never falls more than the deadline behind, in video time. A frame is then obscured only
when the detector failed on it and on every frame up to the deadline after it, or when the file
ended with no result covering it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from daemon.regions import Detection
from daemon.schema import StrictModel


class GateConfig(StrictModel):
    on_missing: Literal["obscure", "drop"] = Field(
        "obscure", description="a frame without a fresh detection result is blanked, or dropped"
    )
    deadline_ms: float = Field(
        500.0,
        gt=0,
        le=10_000,
        description="longest a frame may wait for, or be away from, its detection",
    )
    queue_frames: int = Field(
        10,
        ge=2,
        le=250,
        description="raw frames held in memory awaiting detection; live sources drop beyond it",
    )


@dataclass(frozen=True, slots=True)
class DetectionResult:
    """One detector run: on frame ``index`` (shown at ``pts``), finished at ``done``."""

    index: int
    pts: float
    done: float  # time.monotonic() when the result was ready
    detections: list[Detection] | None = field(default=None)  # None when the run failed
    error: str | None = None
    ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.detections is not None


Verdict = Literal["wait", "mask", "obscure"]


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str = ""  # for obscure: detection-missing | detection-late | detection-failed
    wait_s: float = 0.0  # for wait: how long until the deadline


class Gate:
    """Keeps recent detection results and decides each frame. Used by one thread."""

    def __init__(self, cfg: GateConfig, *, wall_clock: bool = True) -> None:
        self.cfg = cfg
        self.deadline_s = cfg.deadline_ms / 1000.0
        self.wall_clock = wall_clock
        self._ok: list[DetectionResult] = []  # successful results, by index
        self._ok_index: list[int] = []
        self._last_error_index = -1
        self._last_run_pts = float("-inf")  # newest frame any run (ok or failed) was on

    def add(self, r: DetectionResult) -> None:
        self._last_run_pts = max(self._last_run_pts, r.pts)
        if not r.ok:
            self._last_error_index = max(self._last_error_index, r.index)
            return
        if self._ok_index and r.index <= self._ok_index[-1]:
            return  # results arrive in frame order; an old one adds nothing
        self._ok.append(r)
        self._ok_index.append(r.index)

    def covering(self, index: int) -> DetectionResult | None:
        i = bisect.bisect_left(self._ok_index, index)
        return self._ok[i] if i < len(self._ok) else None

    def decide(
        self, index: int, pts: float, captured: float, now: float, *, final: bool = False
    ) -> Decision:
        """``final``: no further result will come (the source ended and the detector is idle)."""
        r = self.covering(index)
        if r is not None:
            late = self.wall_clock and r.done - captured > self.deadline_s
            if r.pts - pts > self.deadline_s or late:
                return Decision("obscure", "detection-late")
            return Decision("mask")
        if self.wall_clock:
            left = captured + self.deadline_s - now
            if left > 0 and not final:
                return Decision("wait", wait_s=left)
        elif not final and self._last_run_pts - pts <= self.deadline_s:
            return Decision("wait", wait_s=0.5)
        if self._last_error_index >= index:
            return Decision("obscure", "detection-failed")
        return Decision("obscure", "detection-missing")

    def forget_before(self, index: int) -> None:
        """Drop results no frame at or after ``index`` can need."""
        i = bisect.bisect_left(self._ok_index, index)
        if i > 0:
            del self._ok[:i]
            del self._ok_index[:i]
