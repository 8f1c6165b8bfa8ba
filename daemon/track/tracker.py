"""Carry each face's mask between detections, backwards and forwards in time (rule 3).

The detector runs on some frames only. Frames are held until a detection result at or after
them is in, so for a frame between two detections the tracker knows where each face was before
*and* after it. ``boxes_at`` answers with, per track:

* between two observations: the box interpolated linearly, widened by ``motion_growth`` times
  half the displacement between the two observations (covers non-linear motion);
* after the last observation (face lost, or detector missed it): the last box and the box
  extrapolated with the face's speed, joined, grown by ``lost_growth_per_s`` per second unseen
  and by ``motion_growth`` times the distance it may have moved, for :meth:`Tracker.hold`;
* before the first observation (a face first seen at a later frame): the same, backwards.

:meth:`Tracker.hold` is ``hold_s`` but never less than the gate deadline (``bridge_s``: a frame
is masked with a detection at most that much later, so a face first seen there is covered back
to it) nor than the longest recent gap between two detection results (capped at
``MAX_BRIDGE_S``): a track seen in one result is still matchable in the next, and its mask
reaches the next result, so two detections of a face are always bridged whatever ``hold_s``
is (rule 3: no config value may open a gap).

Speeds come from three observations and are clamped to ``MAX_SPEED`` face sizes per second;
travel and growth for motion are each capped at ``MAX_GROWTH`` face sizes, so mismatched
detections cannot blow a mask up to half the picture. A face whose speed is unknown (seen
fewer than three times) is assumed to move up to three face sizes per second (growth capped at
1.5 face sizes per side), so a face detected in frame N stays covered in N+1 and in the frames
before N that were held back.

In the service, :meth:`Tracker.prune` keeps two observations at or before the emitted frame,
so a *lost* face (all its observations behind) always gets the unknown-speed growth; a speed
is measured only while observations ahead of the emitted frame are held. Keeping three, so
lost faces used their measured speed, leaked more reference faces on the shared clips (the
facenet crowd: 3 face-frames in a run of 3 instead of 2 in a run of 2; issue 10's notes): real
faces there reach 6.9 face sizes/s at the 99th percentile, and a measured speed is often an
underestimate of where a face goes next. So this is kept, on purpose.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from daemon.regions import Box, Detection
from daemon.track.config import TrackConfig

UNKNOWN_SPEED = 3.0  # face sizes per second assumed when a track has a single observation
UNKNOWN_MAX_GROWTH = 1.5  # ... but it grows by at most this many face sizes on each side
MAX_SPEED = 5.0  # face sizes per second: faster estimates come from mismatched detections
MAX_GROWTH = 2.0  # face sizes per side a mask grows for motion, at most
MAX_SPEED_GAP_S = 1.0  # observations further apart than this do not give a speed
MAX_BRIDGE_S = 10.0  # a gap between detection results widens the hold by at most this
RECENT_GAPS = 8  # the hold covers the longest of this many recent gaps between results
# Person tracks (heads, from the person model) between its sparser passes: (unknown-speed
# growth, motion growth) caps in head sizes per side. The face caps would widen a head four- to
# fivefold between two passes; a masked head never shrinks below its last sighting either way.
GROWTH_CAPS = {"person": (0.5, 1.0)}


@dataclass(slots=True)
class Observation:
    index: int
    pts: float
    box: Box
    score: float


@dataclass(slots=True)
class Track:
    id: int
    label: str
    obs: list[Observation] = field(default_factory=list)

    @property
    def last(self) -> Observation:
        return self.obs[-1]

    def velocity(self, at_end: bool) -> tuple[float, float] | None:
        """Centre speed in px/s over the three outermost observations at one end, if close.

        Two observations are not enough: one false positive matched to another would give a
        speed no face has, and the mask would be stretched along it.
        """
        if len(self.obs) < 3:
            return None
        a, b = (self.obs[-3], self.obs[-1]) if at_end else (self.obs[0], self.obs[2])
        dt = b.pts - a.pts
        if dt <= 0 or dt > MAX_SPEED_GAP_S:
            return None
        (ax, ay), (bx, by) = _centre(a.box), _centre(b.box)
        vx, vy = (bx - ax) / dt, (by - ay) / dt
        limit = MAX_SPEED * max(b.box[2], b.box[3])
        speed = (vx * vx + vy * vy) ** 0.5
        if speed > limit:  # a face does not cross the picture in a blink: clamp, keep direction
            vx, vy = vx * limit / speed, vy * limit / speed
        return vx, vy


@dataclass(frozen=True, slots=True)
class TrackedBox:
    box: Box
    track_id: int
    label: str
    score: float
    seen: bool  # an observation exactly at this frame


def _centre(b: Box) -> tuple[float, float]:
    return b[0] + b[2] / 2, b[1] + b[3] / 2


def _grow(b: Box, ex: float, ey: float) -> Box:
    return (b[0] - ex, b[1] - ey, b[2] + 2 * ex, b[3] + 2 * ey)


def _hull(a: Box, b: Box) -> Box:
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return (x0, y0, x1 - x0, y1 - y0)


class Tracker:
    """Associates detections over time. Not thread-safe: one thread (the output thread) owns it.

    Call :meth:`update` with each detection result in frame order, :meth:`boxes_at` for each
    frame to emit (in order, never before a result at or after it was given to ``update``),
    and :meth:`prune` with the newest emitted frame.
    """

    def __init__(self, cfg: TrackConfig, bridge_s: float = 0.0) -> None:
        self.cfg = cfg
        self.bridge_s = bridge_s  # the gate deadline: the hold never goes below it
        self.tracks: list[Track] = []
        self._next_id = 1
        self._last_update_index = -1
        self._last_update_pts: float | None = None
        self._gaps: deque[float] = deque(maxlen=RECENT_GAPS)

    def hold(self) -> float:
        """How long a track stays matchable and masked past its first/last observation.

        ``hold_s``, the gate deadline or the longest recent gap between detection results,
        whichever is longest, so that a small ``hold_s`` cannot leave the frames between two
        detections of a face (or those held before a face's first detection) unmasked.
        """
        return max(self.cfg.hold_s, self.bridge_s, max(self._gaps, default=0.0))

    def _predict(self, t: Track, pts: float) -> Box:
        """Where a track may be at ``pts`` after its last observation (for matching)."""
        return self._extrapolate(t, pts, at_end=True)

    def _extrapolate(self, t: Track, pts: float, at_end: bool) -> Box:
        o = t.last if at_end else t.obs[0]
        dt = abs(pts - o.pts)
        x, y, w, h = o.box
        v = t.velocity(at_end)
        unknown_cap, cap = GROWTH_CAPS.get(t.label, (UNKNOWN_MAX_GROWTH, MAX_GROWTH))
        if v is None:
            size = max(w, h)
            ex = ey = size * min(unknown_cap, self.cfg.motion_growth * UNKNOWN_SPEED * dt)
            moved = o.box
        else:
            sign = 1.0 if at_end else -1.0
            # travel along the speed, at most MAX_GROWTH face sizes from the last sighting
            tx = max(-MAX_GROWTH * w, min(MAX_GROWTH * w, sign * v[0] * dt))
            ty = max(-MAX_GROWTH * h, min(MAX_GROWTH * h, sign * v[1] * dt))
            moved = (x + tx, y + ty, w, h)
            ex = min(self.cfg.motion_growth * abs(v[0]) * dt, cap * w)
            ey = min(self.cfg.motion_growth * abs(v[1]) * dt, cap * h)
        g = self.cfg.lost_growth_per_s * dt
        ex += w * g / 2
        ey += h * g / 2
        return _grow(_hull(o.box, moved), ex, ey)

    def update(self, index: int, pts: float, detections: list[Detection]) -> None:
        """Add one detection result (frame ``index``); results must come in frame order."""
        if index <= self._last_update_index:
            return
        self._last_update_index = index
        if self._last_update_pts is not None and pts > self._last_update_pts:
            self._gaps.append(min(MAX_BRIDGE_S, pts - self._last_update_pts))
        self._last_update_pts = pts
        hold = self.hold()
        live = [t for t in self.tracks if pts - t.last.pts <= hold]
        pairs = self._pairs(live, pts, detections)
        pairs.sort(reverse=True)
        used_t: set[int] = set()
        used_d: set[int] = set()
        for _, ti, di in pairs:
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            d = detections[di]
            live[ti].obs.append(Observation(index, pts, d.box, d.score))
        for di, d in enumerate(detections):
            if di not in used_d:
                self.tracks.append(
                    Track(self._next_id, d.label, [Observation(index, pts, d.box, d.score)])
                )
                self._next_id += 1

    def _pairs(
        self, live: list[Track], pts: float, detections: list[Detection]
    ) -> list[tuple[float, int, int]]:
        """(score, track, detection) for every candidate match: IoU with the track's predicted
        box at least ``iou_match``, or the detection's centre inside it (+0.5).

        Vectorized over all tracks x detections: a crowd gives ~160 tracks x ~70 faces, which
        took ~10 ms per detection result as a Python double loop.
        """
        if not live or not detections:
            return []
        p = np.array([self._predict(t, pts) for t in live], dtype=np.float64)
        d = np.array([det.box for det in detections], dtype=np.float64)
        px, py, pw, ph = (p[:, k, None] for k in range(4))
        dx, dy, dw, dh = (d[None, :, k] for k in range(4))
        iw = np.minimum(px + pw, dx + dw) - np.maximum(px, dx)
        ih = np.minimum(py + ph, dy + dh) - np.maximum(py, dy)
        overlap = (iw > 0) & (ih > 0)
        inter = np.where(overlap, iw * ih, 0.0)
        union = pw * ph + dw * dh - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(overlap & (union > 0), inter / union, 0.0)
        cx, cy = dx + dw / 2, dy + dh / 2
        inside = (px <= cx) & (cx <= px + pw) & (py <= cy) & (cy <= py + ph)
        labels = np.array([t.label for t in live], dtype=object)[:, None]
        same = labels == np.array([det.label for det in detections], dtype=object)[None, :]
        ok = same & ((score >= self.cfg.iou_match) | inside)
        total = score + np.where(inside, 0.5, 0.0)
        tis, dis = np.nonzero(ok)
        return [(float(total[ti, di]), int(ti), int(di)) for ti, di in zip(tis, dis, strict=True)]

    def boxes_at(self, index: int, pts: float) -> list[TrackedBox]:
        """Every box to mask in frame ``index`` (shown at ``pts``)."""
        out: list[TrackedBox] = []
        hold = self.hold()
        for t in self.tracks:
            before = after = None
            for o in t.obs:
                if o.index <= index:
                    before = o
                elif after is None:
                    after = o
                    break
            if before is not None and before.index == index:
                out.append(TrackedBox(before.box, t.id, t.label, before.score, True))
            elif before is not None and after is not None:
                span = after.pts - before.pts
                f = 0.5 if span <= 0 else min(1.0, max(0.0, (pts - before.pts) / span))
                b = tuple(bv + (av - bv) * f for bv, av in zip(before.box, after.box, strict=True))
                (bx, by), (ax, ay) = _centre(before.box), _centre(after.box)
                g = self.cfg.motion_growth * 0.5
                lost = self.cfg.lost_growth_per_s * min(pts - before.pts, after.pts - pts)
                cap = GROWTH_CAPS.get(t.label, (UNKNOWN_MAX_GROWTH, MAX_GROWTH))[1]
                ex = min(g * abs(ax - bx), cap * b[2]) + b[2] * lost / 2
                ey = min(g * abs(ay - by), cap * b[3]) + b[3] * lost / 2
                box = _grow(b, ex, ey)  # type: ignore[arg-type]
                out.append(TrackedBox(box, t.id, t.label, max(before.score, after.score), False))
            elif before is not None:
                if pts - before.pts <= hold:
                    box = self._extrapolate(t, pts, at_end=True)  # before is t.last here
                    out.append(TrackedBox(box, t.id, t.label, before.score, False))
            elif after is not None and after.pts - pts <= hold:
                box = self._extrapolate(t, pts, at_end=False)
                out.append(TrackedBox(box, t.id, t.label, after.score, False))
        return out

    def count_at(self, index: int, pts: float) -> int:
        return len(self.boxes_at(index, pts))

    def prune(self, emitted_index: int, emitted_pts: float) -> None:
        """Forget what no frame after ``emitted_index`` can need any more."""
        keep: list[Track] = []
        hold = self.hold()
        for t in self.tracks:
            if emitted_pts - t.last.pts > hold:
                continue
            # keep the last observation at or before the emitted frame and one more for speed
            k = 0
            for i, o in enumerate(t.obs):
                if o.index <= emitted_index:
                    k = i
            t.obs = t.obs[max(0, k - 1) :]
            keep.append(t)
        self.tracks = keep
