"""Fit an image into a fixed model input without distorting it.

The image is resized with INTER_LINEAR (INTER_AREA costs milliseconds per frame) and placed at
the top-left of the canvas; the rest is zero. A point ``p`` of the canvas maps back to the image
as ``p / scale``.
"""

from __future__ import annotations

import cv2
import numpy as np


def fit_scale(width: int, height: int, model_w: int, model_h: int) -> float:
    """The largest scale at which a ``width`` x ``height`` image fits the model input."""
    return min(model_w / width, model_h / height)


def resize(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` scaled by ``scale`` (no copy when the scale is 1)."""
    if abs(scale - 1.0) < 1e-6:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def paste(
    crop: np.ndarray, model_w: int, model_h: int, out: np.ndarray | None = None
) -> np.ndarray:
    """``crop`` (at most model size) at the top-left of a zeroed model-size canvas."""
    h, w = crop.shape[:2]
    if h == model_h and w == model_w:
        return crop
    if out is None or out.shape[:2] != (model_h, model_w):
        out = np.zeros((model_h, model_w, crop.shape[2]), dtype=crop.dtype)
    else:
        out[h:, :] = 0
        out[:h, w:] = 0
    out[:h, :w] = crop
    return out


def letterbox(image: np.ndarray, model_w: int, model_h: int) -> tuple[np.ndarray, float]:
    """The whole image fitted into the model input, and the scale that was used."""
    s = fit_scale(image.shape[1], image.shape[0], model_w, model_h)
    small = resize(image, s)[:model_h, :model_w]
    return paste(small, model_w, model_h), s
