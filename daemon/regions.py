"""What the detector found and what the masker covered, in original pixel coordinates.

``Detection`` is a detector's output. ``Region`` is what was actually masked (after margins and
tracking growth); it is written as JSON Lines by ``veilcam mask --regions`` and
``veilcam run --regions``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Box = tuple[float, float, float, float]  # x, y, w, h in pixels, top-left origin
Shape = Literal["box", "ellipse", "polygon"]


@dataclass(frozen=True, slots=True)
class Detection:
    """One object found by a detector, in the coordinates of the frame it was run on."""

    box: Box
    score: float
    label: str = "face"

    @property
    def area(self) -> float:
        return max(0.0, self.box[2]) * max(0.0, self.box[3])


@dataclass(frozen=True, slots=True)
class Region:
    """One masked area. ``det`` is the detector's own box before margins (None for zones)."""

    box: tuple[int, int, int, int]
    label: str = "face"
    shape: Shape = "ellipse"
    score: float | None = None
    det: Box | None = None
    points: tuple[tuple[int, int], ...] = field(default=())
    track_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"box": [int(v) for v in self.box]}
        if self.det is not None:
            out["det"] = [round(float(v), 1) for v in self.det]
        if self.score is not None:
            out["score"] = round(float(self.score), 4)
        out["label"] = self.label
        out["shape"] = self.shape
        if self.points:
            out["points"] = [[int(x), int(y)] for x, y in self.points]
        if self.track_id is not None:
            out["track"] = self.track_id
        return out


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two x, y, w, h boxes."""
    ax2, ay2 = a[0] + a[2], a[1] + a[3]
    bx2, by2 = b[0] + b[2], b[1] + b[3]
    iw = min(ax2, bx2) - max(a[0], b[0])
    ih = min(ay2, by2) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0
