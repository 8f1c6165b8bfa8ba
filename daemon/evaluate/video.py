"""Leaks in a masked video as a viewer sees them: reference faces left uncovered, frame by frame.

The reference (``bench/video_reference.py``) lists, per source frame, the faces a stronger
offline detector found, each with an ``id`` that links it across frames. The regions file is
what veilcam masked (``veilcam mask --regions`` or ``veilcam run --regions``). A reference face
in a recorded frame is protected when the frame was obscured or at least 70 % of its box is
masked (``coverage.PROTECTED``, as for photos). Frames that were never recorded (dropped under
load) show nothing and are counted apart.

Also reported: the share of each frame masked, and the share masked outside every reference
face (grown by ``OUTSIDE_GROW``): the false masks that make a recording look broken.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from daemon.evaluate.coverage import PROTECTED, covered_fraction, region_mask
from daemon.evaluate.run import BUCKETS, bucket
from daemon.regions import Region

OUTSIDE_GROW = 0.25  # a reference box grown by a quarter of its size each side: head, hair


class VideoEvalError(Exception):
    """A reference or regions file that cannot be read or does not match the clip."""


@dataclass(frozen=True, slots=True)
class Reference:
    header: dict[str, Any]
    faces: dict[int, list[dict[str, Any]]]  # source frame -> faces (box, score, id)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.header["width"]), int(self.header["height"])


def _jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield n, json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise VideoEvalError(f"{path}:{n}: not JSON: {exc.msg}") from None
    except OSError as exc:
        raise VideoEvalError(f"{path}: {exc.strerror or exc}") from None


def load_reference(path: Path) -> Reference:
    rows = list(_jsonl(path))
    if not rows or "frames" not in rows[0][1] or "width" not in rows[0][1]:
        raise VideoEvalError(f"{path}:1: expected a header line with width, height and frames")
    faces: dict[int, list[dict[str, Any]]] = {}
    for n, row in rows[1:]:
        if "frame" not in row or not isinstance(row.get("faces"), list):
            raise VideoEvalError(f"{path}:{n}: expected {{'frame': N, 'faces': [...]}}")
        faces[int(row["frame"])] = row["faces"]
    return Reference(rows[0][1], faces)


def _region(d: dict[str, Any]) -> Region:
    pts = tuple((int(x), int(y)) for x, y in d.get("points", ()))
    box = tuple(int(v) for v in d["box"])
    return Region(box, d.get("label", "face"), d.get("shape", "ellipse"), points=pts)  # type: ignore[arg-type]


def load_regions(path: Path) -> dict[int, dict[str, Any]]:
    """Source frame index -> ``{"regions": [Region], "obscured": bool}``.

    ``veilcam run`` writes the source frame as ``source`` (its ``frame`` counts recorded frames);
    ``veilcam mask`` records every frame, so its ``frame`` is the source frame.
    """
    out: dict[int, dict[str, Any]] = {}
    for n, row in _jsonl(path):
        if "frame" not in row or not isinstance(row.get("regions"), list):
            raise VideoEvalError(f"{path}:{n}: expected {{'frame': N, 'regions': [...]}}")
        src = int(row.get("source", row["frame"]))
        out[src] = {
            "regions": [_region(r) for r in row["regions"]],
            "obscured": bool(row.get("obscured")),
        }
    return out


@dataclass
class _Count:
    total: int = 0
    leaked: int = 0
    longest: int = 0

    def as_dict(self) -> dict[str, Any]:
        share = self.leaked / self.total if self.total else None
        return {
            "face_frames": self.total,
            "leaked": self.leaked,
            "leaked_share": share,
            "longest_run": self.longest,
        }


@dataclass
class VideoScore:
    frames_in_reference: int = 0
    frames_recorded: int = 0
    frames_obscured: int = 0
    frames_with_leak: int = 0
    not_recorded_face_frames: int = 0
    all: _Count = field(default_factory=_Count)
    by_height: dict[str, _Count] = field(default_factory=dict)
    masked_share: list[float] = field(default_factory=list)
    masked_outside_share: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        def median(v: Sequence[float]) -> float | None:
            return float(np.median(v)) if v else None

        return {
            "frames_in_reference": self.frames_in_reference,
            "frames_recorded": self.frames_recorded,
            "frames_obscured": self.frames_obscured,
            "frames_with_leak": self.frames_with_leak,
            "face_frames_not_recorded": self.not_recorded_face_frames,
            **self.all.as_dict(),
            "by_height": {
                b[0]: self.by_height[b[0]].as_dict() for b in BUCKETS if b[0] in self.by_height
            },
            "masked_share_mean": float(np.mean(self.masked_share)) if self.masked_share else None,
            "masked_outside_faces_mean": (
                float(np.mean(self.masked_outside_share)) if self.masked_outside_share else None
            ),
            "masked_outside_faces_median": median(self.masked_outside_share),
        }


def _grown(box: Sequence[float], w: int, h: int) -> tuple[int, int, int, int]:
    x, y, bw, bh = box
    gx, gy = bw * OUTSIDE_GROW, bh * OUTSIDE_GROW
    x1, y1 = max(0, int(x - gx)), max(0, int(y - gy))
    return x1, y1, min(w, int(x + bw + gx + 1)), min(h, int(y + bh + gy + 1))


def score(ref: Reference, masked: dict[int, dict[str, Any]]) -> VideoScore:
    """Score one regions file against one reference (both in source frame numbers)."""
    w, h = ref.size
    s = VideoScore(frames_in_reference=int(ref.header["frames"]))
    run: dict[int, int] = {}  # face id -> current run of leaked recorded frames
    run_bucket: dict[int, str] = {}
    for t in range(s.frames_in_reference):
        faces = ref.faces.get(t, [])
        rec = masked.get(t)
        if rec is None:
            s.not_recorded_face_frames += len(faces)
            continue  # a frame that was not recorded shows nothing; runs continue across it
        s.frames_recorded += 1
        if rec["obscured"]:
            s.frames_obscured += 1
            s.masked_share.append(1.0)
            s.masked_outside_share.append(1.0)
            _tally(s, faces, [False] * len(faces), run, run_bucket)
            continue
        m = region_mask(rec["regions"], w, h)
        leaks = [covered_fraction(m, f["box"]) < PROTECTED for f in faces]
        _tally(s, faces, leaks, run, run_bucket)
        if any(leaks):
            s.frames_with_leak += 1
        s.masked_share.append(float(m.mean()))
        outside = m.copy()
        for f in faces:
            x1, y1, x2, y2 = _grown(f["box"], w, h)
            outside[y1:y2, x1:x2] = False
        s.masked_outside_share.append(float(outside.mean()))
    return s


def _tally(
    s: VideoScore,
    faces: list[dict[str, Any]],
    leaks: list[bool],
    run: dict[int, int],
    run_bucket: dict[int, str],
) -> None:
    for f, leaked in zip(faces, leaks, strict=True):
        b = bucket(float(f["box"][3]))
        c = s.by_height.setdefault(b, _Count())
        for count in (s.all, c):
            count.total += 1
            count.leaked += int(leaked)
        k = f["id"]
        run[k] = run.get(k, 0) + 1 if leaked else 0
        run_bucket[k] = b
        if run[k] > s.all.longest:
            s.all.longest = run[k]
        if run[k] > c.longest:
            c.longest = run[k]


def check_clip(ref: Reference, clip: Path | None) -> None:
    """A reference made for another clip scores nonsense: refuse it (by size and frame count)."""
    if clip is None:
        return
    from daemon.media.decode import DecodeError, VideoReader

    try:
        with VideoReader(clip) as r:
            size = r.size
    except DecodeError as exc:
        raise VideoEvalError(str(exc)) from None
    if tuple(size) != ref.size:
        raise VideoEvalError(
            f"{clip}: {size[0]}x{size[1]}, but the reference was made on a "
            f"{ref.size[0]}x{ref.size[1]} clip ({ref.header.get('file')})"
        )
