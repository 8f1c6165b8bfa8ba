"""BlazeFace backend (MediaPipe short- and full-range face detectors).

Input: RGB scaled to [-1, 1], square (128 px short range, 192 px full range). Outputs: per anchor
16 regressors (box centre offset, size, 6 key points, in input pixels) and one score logit.
Anchors follow MediaPipe's SsdAnchorsCalculator for the two graphs. A selfie model: good on
near faces, weak on crowds, so it is an option for cheap near-field passes, not the default.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from daemon.detect.config import BlazeFaceConfig
from daemon.detect.errors import ModelError
from daemon.detect.manifest import ModelInfo
from daemon.detect.nms import nms
from daemon.detect.runtime import TFLiteModel

# stride -> anchors per cell, per MediaPipe's face_detection_{short,full}_range graphs
ANCHOR_LAYOUT = {128: ((8, 2), (16, 6)), 192: ((4, 1),)}


def anchors(size: int) -> np.ndarray:
    """(N, 2) anchor centres in input pixels, in the order of the model's outputs."""
    if size not in ANCHOR_LAYOUT:
        raise ModelError(f"no BlazeFace anchor layout for a {size} px input")
    out = []
    for stride, per_cell in ANCHOR_LAYOUT[size]:
        n = size // stride
        ys, xs = np.mgrid[0:n, 0:n]
        centres = np.stack([(xs + 0.5) * stride, (ys + 0.5) * stride], axis=-1).reshape(-1, 2)
        out.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


class BlazeFaceModel:
    """One BlazeFace interpreter; ``infer`` finds faces in one model-size RGB canvas."""

    def __init__(self, info: ModelInfo, cfg: BlazeFaceConfig, threads: int) -> None:
        self.cfg = cfg
        self.model = TFLiteModel(Path(info.path), threads)
        self.width, self.height = self.model.width, self.model.height
        self._anchors = anchors(self.width)
        shapes = [tuple(int(v) for v in d["shape"]) for d in self.model.outputs]
        try:
            self._reg = next(i for i, s in enumerate(shapes) if s[-1] == 16)
            self._cls = next(i for i, s in enumerate(shapes) if s[-1] == 1)
        except StopIteration:
            raise ModelError(
                f"{self.model.path}: not a BlazeFace model (outputs {shapes})"
            ) from None
        if shapes[self._reg][1] != len(self._anchors):
            raise ModelError(
                f"{self.model.path}: {shapes[self._reg][1]} anchors, expected {len(self._anchors)}"
            )
        # the logit above which sigmoid(logit) > threshold
        self.threshold = cfg.score_threshold

    def threshold_at(self, level: float) -> float:
        """BlazeFace's scores were not measured in the dark: one threshold for every frame."""
        return self.threshold

    def infer(
        self, canvas_rgb: np.ndarray, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        m = self.model
        m.invoke(m.to_input(canvas_rgb, scale=1 / 127.5, offset=-1.0))
        logits = m.output(self._cls)[:, 0]
        t = self.threshold if threshold is None else threshold
        idx = np.nonzero(logits > float(np.log(t / (1 - t))))[0]  # sigmoid(logit) > t
        if len(idx) == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        reg = m.output(self._reg)[idx]
        scores = 1 / (1 + np.exp(-np.clip(logits[idx], -100, 100)))
        c = self._anchors[idx] + reg[:, 0:2]
        half = reg[:, 2:4] / 2
        boxes = np.concatenate([c - half, c + half], axis=1)
        keep = nms(boxes, scores, self.cfg.nms_iou)
        return boxes[keep].astype(np.float32), scores[keep].astype(np.float32)
