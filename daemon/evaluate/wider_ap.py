"""WIDER FACE average precision, following the official evaluation (``evaluation.m``).

Per setting (easy / medium / hard), faces outside the setting are ignored: a detection that
matches one (IoU >= 0.5) counts neither as a hit nor as a false positive. Scores are min-max
normalised over the whole set, the precision-recall curve is taken at 1000 thresholds, and AP
is the VOC area under the interpolated curve.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

THRESHOLDS = 1000
IOU = 0.5


def _iou_matrix(dets: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """IoU between x, y, w, h boxes (official: +1 pixel convention not used here)."""
    dx1, dy1 = dets[:, 0:1], dets[:, 1:2]
    dx2, dy2 = dx1 + dets[:, 2:3], dy1 + dets[:, 3:4]
    gx1, gy1 = gts[:, 0], gts[:, 1]
    gx2, gy2 = gx1 + gts[:, 2], gy1 + gts[:, 3]
    iw = np.clip(np.minimum(dx2, gx2) - np.maximum(dx1, gx1), 0, None)
    ih = np.clip(np.minimum(dy2, gy2) - np.maximum(dy1, gy1), 0, None)
    inter = iw * ih
    union = dets[:, 2:3] * dets[:, 3:4] + gts[:, 2] * gts[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def image_pr(
    dets: np.ndarray, scores: np.ndarray, gts: np.ndarray, keep: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """(T, 2): proposals and true positives at each score threshold, for one image."""
    order = np.argsort(-scores, kind="stable")
    dets, scores = dets[order], scores[order]
    recalled = np.zeros(len(gts), np.int8)  # 1 recalled, -1 ignored
    proposal = np.ones(len(dets), np.int8)
    tp_upto = np.zeros(len(dets), np.int64)
    if len(gts) and len(dets):
        ious = _iou_matrix(dets, gts)
        for i in range(len(dets)):
            j = int(np.argmax(ious[i]))
            if ious[i, j] >= IOU:
                if not keep[j]:
                    recalled[j] = -1
                    proposal[i] = -1
                elif recalled[j] == 0:
                    recalled[j] = 1
            tp_upto[i] = int((recalled == 1).sum())
    # number of detections scoring >= each threshold (scores are sorted descending)
    n = np.searchsorted(-scores, -thresholds, side="right")
    props = np.concatenate([[0], np.cumsum(proposal == 1)])
    tps = np.concatenate([[0], tp_upto])
    return np.stack([props[n], tps[n]], axis=1)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def average_precision(
    per_image: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
) -> float:
    """AP over images given as (det boxes xywh, det scores, gt boxes xywh, gt kept mask)."""
    all_scores = np.concatenate([s for _, s, _, _ in per_image if len(s)] or [np.zeros(0)])
    lo, hi = (float(all_scores.min()), float(all_scores.max())) if len(all_scores) else (0, 1)
    span = hi - lo if hi > lo else 1.0
    thresholds = 1 - (np.arange(1, THRESHOLDS + 1) / THRESHOLDS)
    pr = np.zeros((THRESHOLDS, 2), np.int64)
    n_faces = 0
    for dets, scores, gts, keep in per_image:
        n_faces += int(keep.sum())
        if len(dets) == 0:
            continue
        pr += image_pr(dets, (scores - lo) / span, gts, keep, thresholds)
    if n_faces == 0:
        return float("nan")
    precision = np.where(pr[:, 0] > 0, pr[:, 1] / np.maximum(pr[:, 0], 1), 0.0)
    recall = pr[:, 1] / n_faces
    return voc_ap(recall, precision)
