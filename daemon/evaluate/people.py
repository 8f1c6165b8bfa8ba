"""Person detection on an annotated set (``veilcam eval people --dataset DIR``).

The set: ``images/`` and ``annotations.jsonl`` with one line per image,
``{"image", "people": [{"box": [x, y, w, h], "ignore": bool}]}`` (people_pets09's format).
Detections are matched greedily (best score first) to annotated people at IoU >= 0.5. A
detection matching an ``ignore`` box (or none, while overlapping an ignore box by IoU >= 0.5)
counts neither as a hit nor as a false positive; an ignore box is never a miss. Recall is given
by person height; AP is the area under the precision/recall curve (all-points interpolation,
as PASCAL VOC 2010+).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from daemon.evaluate.dataset import DatasetError
from daemon.regions import Detection, iou

HEIGHT_BINS = (("<80", 0, 80), ("80-120", 80, 120), ("120+", 120, 1e9))
IOU = 0.5


def _load(root: Path, limit: int | None) -> list[dict[str, Any]]:
    ann = root / "annotations.jsonl"
    if not ann.is_file():
        raise DatasetError(f"{ann}: no annotations.jsonl")
    out = []
    for n, line in enumerate(ann.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            people = [
                (tuple(float(v) for v in p["box"]), bool(p.get("ignore"))) for p in rec["people"]
            ]
            out.append({"image": rec["image"], "people": people})
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{ann}:{n}: not a people annotation: {exc}") from None
    return out[:limit] if limit else out


def match(
    dets: list[Detection], people: list[tuple[tuple[float, ...], bool]]
) -> tuple[list[tuple[float, bool | None]], list[bool]]:
    """Per detection (score, True hit / False false positive / None ignored); per person hit."""
    order = sorted(range(len(dets)), key=lambda i: -dets[i].score)
    hit = [False] * len(people)
    scored: list[tuple[float, bool | None]] = []
    for i in order:
        d = dets[i]
        best, bj = IOU, -1
        for j, (box, ign) in enumerate(people):
            if ign or hit[j]:
                continue
            v = iou(d.box, box)  # type: ignore[arg-type]
            if v >= best:
                best, bj = v, j
        if bj >= 0:
            hit[bj] = True
            scored.append((d.score, True))
        elif any(ign and iou(d.box, box) >= IOU for box, ign in people):  # type: ignore[arg-type]
            scored.append((d.score, None))
        else:
            scored.append((d.score, False))
    return scored, hit


def average_precision(scored: list[tuple[float, bool | None]], positives: int) -> float | None:
    if positives == 0:
        return None
    s = sorted((x for x in scored if x[1] is not None), key=lambda x: -x[0])
    tp = np.cumsum([1.0 if h else 0.0 for _, h in s])
    fp = np.cumsum([0.0 if h else 1.0 for _, h in s])
    if len(s) == 0:
        return 0.0
    rec = tp / positives
    prec = tp / np.maximum(tp + fp, 1e-9)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def evaluate_people(
    detect: Callable[[np.ndarray], list[Detection]],
    root: Path,
    *,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Recall and AP at IoU 0.5 of ``detect``'s "person" boxes on the set at ``root``."""
    items = _load(root, limit)
    scored: list[tuple[float, bool | None]] = []
    bins = {k: [0, 0] for k, _, _ in HEIGHT_BINS}  # hits, people
    people_n = hits = ignored = 0
    ms: list[float] = []
    unreadable = []
    for i, it in enumerate(items):
        img = cv2.imread(str(root / "images" / it["image"]))
        if img is None:
            unreadable.append(it["image"])
            continue
        t0 = time.perf_counter()
        dets = [d for d in detect(img) if d.label == "person"]
        ms.append((time.perf_counter() - t0) * 1e3)
        s, hit = match(dets, it["people"])
        scored += s
        for (box, ign), h in zip(it["people"], hit, strict=True):
            if ign:
                ignored += 1
                continue
            people_n += 1
            hits += h
            for k, lo, hi in HEIGHT_BINS:
                if lo <= box[3] < hi:
                    bins[k][0] += h
                    bins[k][1] += 1
        if progress:
            progress(i + 1, len(items))
    fp = sum(1 for _, h in scored if h is False)
    return {
        "dataset": str(root),
        "images": len(items) - len(unreadable),
        "people": people_n,
        "ignored_boxes": ignored,
        "recall": hits / people_n if people_n else None,
        "recall_by_height": {k: (h / n if n else None) for k, (h, n) in bins.items()},
        "people_by_height": {k: n for k, (_, n) in bins.items()},
        "ap": average_precision(scored, people_n),
        "false_positives": fp,
        "false_positives_per_image": fp / max(1, len(items) - len(unreadable)),
        "ms_per_image_median": float(np.median(ms)) if ms else None,
        "unreadable": unreadable,
    }


def table(r: dict[str, Any]) -> str:
    f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [
        f"dataset {r['dataset']}: {r['images']} images, {r['people']} people "
        f"({r['ignored_boxes']} ignore boxes left out)",
        f"recall at IoU 0.5   {f(r['recall'])}",
    ]
    lines += [
        f"  height {k:<8} {f(v)}  ({r['people_by_height'][k]} people)"
        for k, v in r["recall_by_height"].items()
    ]
    lines.append(f"AP at IoU 0.5       {f(r['ap'])}")
    lines.append(
        f"false positives     {r['false_positives']} ({r['false_positives_per_image']:.2f} per "
        "image; the ground truth misses some people, see the set's README)"
    )
    lines.append(f"ms per image        {r['ms_per_image_median']:.1f} median")
    return "\n".join(lines)
