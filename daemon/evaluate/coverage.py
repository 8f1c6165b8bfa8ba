"""Which annotated faces a set of masked regions protects.

A face is protected when the masked area (the union of every region's box, inscribed ellipse
or polygon) covers at least ``PROTECTED`` of its box.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from daemon.mask import styles
from daemon.regions import Region

PROTECTED = 0.7


def region_mask(regions: Sequence[Region], width: int, height: int) -> np.ndarray:
    """Boolean image of every masked pixel."""
    m = np.zeros((height, width), bool)
    for r in regions:
        x, y, w, h = r.box
        x2, y2 = min(width, x + w), min(height, y + h)
        if x >= x2 or y >= y2:
            continue
        if r.shape == "box":
            m[y:y2, x:x2] = True
            continue
        if r.shape == "polygon":
            shape = styles.polygon_mask(r.points, x, y, w, h)
        else:
            shape = styles.ellipse_mask(w, h)
        m[y:y2, x:x2] |= shape[: y2 - y, : x2 - x] > 0
    return m


def covered_fraction(mask: np.ndarray, box: Sequence[float]) -> float:
    """Share of the pixels of an x, y, w, h box that are masked (clipped to the image)."""
    h_img, w_img = mask.shape
    x, y, w, h = box
    x1, y1 = max(0, round(x)), max(0, round(y))
    x2, y2 = min(w_img, round(x + w)), min(h_img, round(y + h))
    if x2 <= x1 or y2 <= y1:
        return 0.0
    return float(mask[y1:y2, x1:x2].mean())


def protected(mask: np.ndarray, boxes: Sequence[Sequence[float]]) -> list[bool]:
    return [covered_fraction(mask, b) >= PROTECTED for b in boxes]
