"""Person, car, dog and cat detection: MediaPipe's SSD-MobileNetV2 (Open Images v4), int8.

Model: ``ssd_mobilenetv2_oidv4`` (models/manifest.yaml; built by models/make_models.py from npm
``@mediapipe/objectron``). Input 300x300 RGB in [-1, 1], stretched (no letterbox). Outputs per
anchor: box offsets (y_center, x_center, h, w) and 24 class logits (label 0 = none).

Anchors and decoding follow MediaPipe's own graph for this model,
``mediapipe/modules/objectron/object_detection_oid_v4_cpu.pbtxt``: SsdAnchorsCalculator with
num_layers 6, min_scale 0.2, max_scale 0.95, input 300x300, offsets 0.5, strides 16, 32, 64,
128, 256, 512, aspect ratios 1, 2, 0.5, 3, 0.3333, reduce_boxes_in_lowest_layer true
(interpolated_scale_aspect_ratio 1.0, fixed_anchor_size false): 19x19x3 + (10x10 + 5x5 + 3x3 +
2x2 + 1x1)x6 = 1917 anchors; TfLiteTensorsToDetections with sigmoid scores,
exp box sizes, x/y scale 10, h/w scale 5.

A far person is a few pixels tall in a 300x300 view of a whole frame, so besides the whole frame
an N x N grid of overlapping tiles runs (``detect.people.tiles``). A person cut by a tile's edge
comes out as a head-only or legs-only box; such partial boxes are joined across the cut, or
dropped when a whole box from another window already holds them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from daemon.detect.errors import DetectorError, ModelError
from daemon.detect.manifest import ModelInfo, verified_model
from daemon.detect.nms import nms
from daemon.detect.people_config import FULL_PEOPLE_TILES, PeopleConfig
from daemon.detect.runtime import TFLiteModel
from daemon.regions import Detection

SIZE = 300
ANCHOR_OPTIONS = {
    "num_layers": 6,
    "min_scale": 0.2,
    "max_scale": 0.95,
    "strides": (16, 32, 64, 128, 256, 512),
    "aspect_ratios": (1.0, 2.0, 0.5, 3.0, 0.3333),
}
LABEL_NAMES = {"person": "Person", "car": "Car", "dog": "Dog", "cat": "Cat"}
CUT_FRAC = 0.02  # a box edge this close (share of the window side) to an inner cut is partial
JOIN_OVERLAP = 0.6  # partial boxes sharing this much of their width (or height) are one object
INSIDE_FRAC = 0.7  # a partial box with this share of its area inside a whole box is dropped
WINDOW_NMS_IOU = 0.45  # per window and label (MediaPipe's graph: 0.4, keeping one box)


def anchors() -> np.ndarray:
    """(1917, 4) anchors cx, cy, w, h in [0, 1], in the model's output order."""
    o = ANCHOR_OPTIONS
    n, lo, hi = o["num_layers"], o["min_scale"], o["max_scale"]
    out = []
    for layer, stride in enumerate(o["strides"]):
        scale = lo + (hi - lo) * layer / (n - 1)
        if layer == 0:  # reduce_boxes_in_lowest_layer
            shapes = [(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
        else:
            nxt = 1.0 if layer == n - 1 else lo + (hi - lo) * (layer + 1) / (n - 1)
            shapes = [(scale, a) for a in o["aspect_ratios"]] + [(math.sqrt(scale * nxt), 1.0)]
        f = math.ceil(SIZE / stride)
        for y in range(f):
            for x in range(f):
                cx, cy = (x + 0.5) / f, (y + 0.5) / f
                out += [(cx, cy, s * math.sqrt(a), s / math.sqrt(a)) for s, a in shapes]
    return np.array(out, np.float32)


class SsdModel:
    """One interpreter; ``infer`` gives boxes per wanted label in one 300x300 RGB canvas."""

    def __init__(self, info: ModelInfo, thresholds: dict[str, float], threads: int) -> None:
        self.model = TFLiteModel(Path(info.path), threads)
        names = list(info.meta.get("labels") or [])
        self._anchors = anchors()
        self._cls: dict[str, int] = {}
        for label in thresholds:
            if LABEL_NAMES[label] not in names:
                raise ModelError(f"{info.path}: no label {LABEL_NAMES[label]!r} in the manifest")
            self._cls[label] = names.index(LABEL_NAMES[label])
        # sigmoid(logit) > t  <=>  logit > log(t / (1 - t))
        self._logit = {k: float(np.log(t / (1 - t))) for k, t in thresholds.items()}
        shapes = [tuple(int(v) for v in d["shape"]) for d in self.model.outputs]
        try:
            self._box = next(i for i, s in enumerate(shapes) if s[-1] == 4)
            self._score = next(i for i, s in enumerate(shapes) if s[-1] == len(names))
        except StopIteration:
            raise ModelError(f"{info.path}: not the SSD person model (outputs {shapes})") from None
        if shapes[self._box][1] != len(self._anchors) or (self.model.width, self.model.height) != (
            SIZE,
            SIZE,
        ):
            raise ModelError(f"{info.path}: expected 300x300 input and {len(self._anchors)} boxes")

    def infer(self, canvas_rgb: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Per label: (N, 4) x1, y1, x2, y2 in [0, 1] of the canvas and (N,) scores."""
        m = self.model
        m.invoke(m.to_input(canvas_rgb, scale=1 / 127.5, offset=-1.0))
        logits = m.output(self._score)
        raw = None
        out = []
        for label, c in self._cls.items():
            idx = np.nonzero(logits[:, c] > self._logit[label])[0]
            if len(idx) == 0:
                continue
            if raw is None:
                raw = m.output(self._box)
            b, a = raw[idx], self._anchors[idx]
            cy = b[:, 0] / 10 * a[:, 3] + a[:, 1]
            cx = b[:, 1] / 10 * a[:, 2] + a[:, 0]
            h = np.exp(np.clip(b[:, 2] / 5, -10, 10)) * a[:, 3]
            w = np.exp(np.clip(b[:, 3] / 5, -10, 10)) * a[:, 2]
            boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
            scores = 1 / (1 + np.exp(-np.clip(logits[idx, c], -100, 100)))
            keep = nms(boxes, scores, WINDOW_NMS_IOU)
            out.append((label, boxes[keep].astype(np.float32), scores[keep].astype(np.float32)))
        return out

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]


@dataclass(slots=True)
class _Box:
    label: str
    xyxy: np.ndarray
    score: float
    cut: tuple[bool, bool, bool, bool]  # left, top, right, bottom edge on an inner tile cut

    @property
    def partial(self) -> bool:
        return any(self.cut)


def windows(width: int, height: int, cfg: PeopleConfig) -> list[tuple[int, int, int, int]]:
    """The whole frame, then the N x N tiles (x, y, w, h), each stretched to 300x300."""
    out = [(0, 0, width, height)]
    n = FULL_PEOPLE_TILES if cfg.tiles is None else cfg.tiles  # None: no profile applied
    if n < 2 or (cfg.tile_min_side and min(width, height) < cfg.tile_min_side):
        return out
    # n tiles of side s overlapping by o*s cover L: n*s - (n-1)*o*s = L
    tw = width / (n - (n - 1) * cfg.tile_overlap)
    th = height / (n - (n - 1) * cfg.tile_overlap)
    for j in range(n):
        for i in range(n):
            x = round(i * (width - tw) / (n - 1))
            y = round(j * (height - th) / (n - 1))
            out.append((x, y, round(tw), round(th)))
    return out


def _span_overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    """Shared length over the shorter span."""
    inter = min(a1, b1) - max(a0, b0)
    return inter / max(1e-6, min(a1 - a0, b1 - b0))


def merge(boxes: list[_Box], nms_iou: float) -> list[_Box]:
    """Join partial boxes across tile cuts, drop partial boxes inside whole ones, then NMS."""
    out: list[_Box] = []
    for label in sorted({b.label for b in boxes}):
        group = [b for b in boxes if b.label == label]
        joined = True
        while joined:
            joined = False
            for i, a in enumerate(group):
                for j in range(i + 1, len(group)):
                    b = group[j]
                    if not (a.partial and b.partial):
                        continue
                    ax, bx = a.xyxy, b.xyxy
                    vert = (a.cut[1] or a.cut[3] or b.cut[1] or b.cut[3]) and _span_overlap(
                        ax[0], ax[2], bx[0], bx[2]
                    ) >= JOIN_OVERLAP
                    horiz = (a.cut[0] or a.cut[2] or b.cut[0] or b.cut[2]) and _span_overlap(
                        ax[1], ax[3], bx[1], bx[3]
                    ) >= JOIN_OVERLAP
                    touch = _span_overlap(ax[1], ax[3], bx[1], bx[3]) > -0.05 and (
                        _span_overlap(ax[0], ax[2], bx[0], bx[2]) > -0.05
                    )
                    if (vert or horiz) and touch:
                        u = np.concatenate([np.minimum(ax[:2], bx[:2]), np.maximum(ax[2:], bx[2:])])
                        group[i] = _Box(label, u, max(a.score, b.score), (False,) * 4)
                        del group[j]
                        joined = True
                        break
                if joined:
                    break
        whole = [b for b in group if not b.partial]
        kept = []
        for b in group:
            if b.partial and any(_inside(b.xyxy, w.xyxy) >= INSIDE_FRAC for w in whole):
                continue
            kept.append(b)
        if kept:
            xyxy = np.array([b.xyxy for b in kept], np.float32)
            scores = np.array([b.score for b in kept], np.float32)
            out += [kept[i] for i in nms(xyxy, scores, nms_iou)]
    return out


def _inside(a: np.ndarray, b: np.ndarray) -> float:
    """Share of box ``a``'s area inside box ``b``."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    return float(iw * ih / max(1e-6, (a[2] - a[0]) * (a[3] - a[1])))


class PeopleDetector:
    """Finds people (and cars, dogs, cats) in BGR frames of any size. One caller at a time."""

    def __init__(self, cfg: PeopleConfig, models_dir: Path | None, threads: int) -> None:
        self.cfg = cfg
        info = verified_model(cfg.model, models_dir)
        self.name = info.name
        thresholds = {"person": cfg.score_threshold}
        thresholds.update({label: cfg.other_threshold for label in cfg.labels})
        self._model = SsdModel(info, thresholds, threads)
        self.last_runs = 0

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """Labelled boxes (x, y, w, h) in ``image_bgr`` pixels. Raises DetectorError."""
        if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            shape = getattr(image_bgr, "shape", None)
            raise DetectorError(f"expected an HxWx3 BGR image, got {shape}")
        try:
            found = self._detect(image_bgr)
        except DetectorError:
            raise
        except Exception as exc:  # an interpreter failure must reach the fail-closed gate
            raise DetectorError(f"{self.name}: detection failed: {exc}") from exc
        h, w = image_bgr.shape[:2]
        out = []
        for b in found:
            x1, y1 = max(0.0, float(b.xyxy[0])), max(0.0, float(b.xyxy[1]))
            x2, y2 = min(float(w), float(b.xyxy[2])), min(float(h), float(b.xyxy[3]))
            if x2 - x1 >= 1 and y2 - y1 >= 1:
                out.append(Detection((x1, y1, x2 - x1, y2 - y1), b.score, b.label))
        return out

    def _detect(self, img: np.ndarray) -> list[_Box]:
        h, w = img.shape[:2]
        wins = windows(w, h, self.cfg)
        self.last_runs = len(wins)
        boxes: list[_Box] = []
        for x, y, ww, wh in wins:
            crop = img[y : y + wh, x : x + ww]
            canvas = cv2.cvtColor(
                cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
            )
            inner = (x > 0, y > 0, x + ww < w, y + wh < h)
            for label, xyxy, scores in self._model.infer(canvas):
                px = xyxy * np.array([ww, wh, ww, wh], np.float32) + np.array(
                    [x, y, x, y], np.float32
                )
                for k in range(len(scores)):
                    nx1, ny1, nx2, ny2 = xyxy[k]
                    cut = (
                        inner[0] and nx1 <= CUT_FRAC,
                        inner[1] and ny1 <= CUT_FRAC,
                        inner[2] and nx2 >= 1 - CUT_FRAC,
                        inner[3] and ny2 >= 1 - CUT_FRAC,
                    )
                    boxes.append(_Box(label, px[k], float(scores[k]), cut))
        return merge(boxes, self.cfg.nms_iou)

    def close(self) -> None:
        self._model.close()
