"""Merge detections of neighbouring video frames, for offline masking with look-ahead.

When the detector spreads its tiles over N frames, a small face is seen once every N frames.
``veilcam mask`` masks frame t with the faces found in frames t .. t+N-1 (each detection already
carries the latest result of the tiles not run on its frame), so every face is covered by the
run of its tile just before and just after t. Boxes of the same face in different frames are
merged into their union, which also covers the motion between them.
"""

from __future__ import annotations

from collections.abc import Iterable

from daemon.regions import Detection, iou

SAME_FACE_IOU = 0.3


def merge(detections: Iterable[Detection]) -> list[Detection]:
    """One box per face: overlapping boxes (IoU >= 0.3) become their union, best score kept."""
    out: list[list[float]] = []  # x1, y1, x2, y2, score
    for d in sorted(detections, key=lambda d: -d.score):
        x, y, w, h = d.box
        for m in out:
            if iou((m[0], m[1], m[2] - m[0], m[3] - m[1]), d.box) >= SAME_FACE_IOU:
                m[0], m[1] = min(m[0], x), min(m[1], y)
                m[2], m[3] = max(m[2], x + w), max(m[3], y + h)
                break
        else:
            out.append([x, y, x + w, y + h, d.score])
    return [Detection((a, b, c - a, e - b), s) for a, b, c, e, s in out]
