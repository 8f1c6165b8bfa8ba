"""Greedy non-maximum suppression over x1, y1, x2, y2 boxes, by OpenCV's ``NMSBoxes``.

OpenCV's C++ loop replaced a numpy one that cost ~1.6 ms per call on candidate-rich tiles (18 %
of a photo's detection time). Same greedy rule: best score first, a box overlapping a kept one
by more than the IoU threshold goes; boxes with equal scores are taken in OpenCV's order.
"""

from __future__ import annotations

import cv2
import numpy as np


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept, best first."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    b = np.asarray(boxes, dtype=np.float64)
    xywh = np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])
    # score_threshold 0: every candidate already passed its model's own threshold (> 0)
    kept = cv2.dnn.NMSBoxes(xywh, np.asarray(scores, dtype=np.float32), 0.0, float(iou_threshold))
    return np.asarray(kept, dtype=np.int64).reshape(-1)
