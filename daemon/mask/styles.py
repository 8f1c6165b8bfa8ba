"""Ways to hide a region: blur, mosaic and solid fill, inside a box or its inscribed ellipse.

Strength is relative to the region so that a face is unrecognisable at any size:

- **blur** shrinks the region to ``cells`` pixels across (INTER_LINEAR), blurs it there and
  scales it back up: a Gaussian whose kernel is about half the region's size, at a cost that
  does not grow with the face.
- **mosaic** averages the region into at most ``cells`` blocks across its larger side.
- **fill** paints a solid colour.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def _cells(w: int, h: int, cells: int) -> tuple[int, int]:
    """Grid of at most ``cells`` blocks along the larger side, square-ish blocks."""
    side = max(w, h)
    cw = max(1, round(cells * w / side))
    ch = max(1, round(cells * h / side))
    return cw, ch


def _shrink(roi: np.ndarray, cw: int, ch: int) -> np.ndarray:
    """Block means without an integral image: halve with linear steps, then resize to the grid.

    Halving keeps every source pixel in the average (INTER_AREA would too, but costs ms).
    """
    small = roi
    while small.shape[1] > 2 * cw or small.shape[0] > 2 * ch:
        nw, nh = max(cw, small.shape[1] // 2), max(ch, small.shape[0] // 2)
        small = cv2.resize(small, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(small, (cw, ch), interpolation=cv2.INTER_LINEAR)


def mosaic(roi: np.ndarray, cells: int) -> np.ndarray:
    """Block averages: each block's mean colour over the whole block (no aliasing)."""
    h, w = roi.shape[:2]
    small = _shrink(roi, *_cells(w, h, cells))
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def blur(roi: np.ndarray, cells: int) -> np.ndarray:
    """Strong blur whose reach is proportional to the region's size."""
    h, w = roi.shape[:2]
    small = _shrink(roi, *_cells(w, h, cells))
    small = cv2.GaussianBlur(small, (3, 3), 0, borderType=cv2.BORDER_REPLICATE)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def fill(roi: np.ndarray, color: Sequence[int]) -> np.ndarray:
    out = np.empty_like(roi)
    out[:] = np.asarray(color, dtype=roi.dtype)
    return out


def ellipse_mask(w: int, h: int) -> np.ndarray:
    """uint8 mask of the ellipse inscribed in a ``w`` x ``h`` box."""
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, ((w / 2, h / 2), (float(w), float(h)), 0.0), 255, -1)
    return m


def polygon_mask(points: Sequence[tuple[int, int]], x: int, y: int, w: int, h: int) -> np.ndarray:
    """uint8 mask of a polygon (frame coordinates) inside the box ``x, y, w, h``."""
    m = np.zeros((h, w), np.uint8)
    pts = np.asarray(points, np.int32) - np.array([x, y], np.int32)
    cv2.fillPoly(m, [pts], 255)
    return m
