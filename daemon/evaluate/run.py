"""``veilcam eval faces``: run the detector and the masker over an annotated set and score it.

Metrics (T/AI 110.2): coverage recall (a face is protected when the masked area covers >= 70 %
of its box; ``invalid`` faces are left out, as the official WIDER evaluation does) overall, by
face height and by WIDER setting; WIDER AP at IoU 0.5 from the detector's own boxes; the share
of image area masked outside faces; whole-image SSIM between input and output; time per image;
and recall under perturbations.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from daemon.detect import Detector
from daemon.evaluate.coverage import PROTECTED, covered_fraction, region_mask
from daemon.evaluate.dataset import Sample, load
from daemon.evaluate.perturb import PERTURBATIONS
from daemon.evaluate.wider_ap import average_precision
from daemon.mask.masker import Masker

BUCKETS = (("<16", 0, 16), ("16-32", 16, 32), ("32-64", 32, 64), (">=64", 64, 1e9))
SETTINGS = ("easy", "medium", "hard")


def bucket(height: float) -> str:
    return next(name for name, lo, hi in BUCKETS if lo <= height < hi)


@dataclass
class _Tally:
    hit: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)

    def add(self, keys: list[str], ok: bool) -> None:
        for k in keys:
            self.total[k] = self.total.get(k, 0) + 1
            self.hit[k] = self.hit.get(k, 0) + int(ok)

    def recall(self, k: str) -> float | None:
        n = self.total.get(k, 0)
        return self.hit.get(k, 0) / n if n else None


def _keys(face_h: float, settings: frozenset[str]) -> list[str]:
    return ["all", bucket(face_h), *sorted(settings), *(["16+"] if face_h >= 16 else [])]


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    ga = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY)
    gb = cv2.cvtColor(b, cv2.COLOR_BGR2GRAY)
    return float(structural_similarity(ga, gb, data_range=255))


def _ap_dets(regions: list) -> tuple[np.ndarray, np.ndarray]:
    """The detector's own boxes and scores behind the face regions (for AP)."""
    face_det = [r for r in regions if r.det is not None and r.label == "face"]
    boxes = np.array([r.det for r in face_det], np.float64).reshape(-1, 4)
    return boxes, np.array([r.score or 0.0 for r in face_det], np.float64)


def evaluate(
    detector: Detector,
    masker: Masker,
    root: Path,
    *,
    limit: int | None = None,
    perturb: bool = True,
    perturbations: list[str] | None = None,
    ssim: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Every metric over the set at ``root`` as a JSON-ready dict (``perturbations``: only
    these of ``PERTURBATIONS``, all when None)."""
    samples: list[Sample] = load(root)[:limit] if limit else load(root)
    tally = _Tally()
    chosen = {k: v for k, v in PERTURBATIONS.items() if perturbations is None or k in perturbations}
    ptally = {name: _Tally() for name in chosen} if perturb else {}
    pap: dict[str, dict[str, list[tuple[np.ndarray, ...]]]] = {
        name: {s: [] for s in SETTINGS} for name in ptally
    }
    ap_in: dict[str, list[tuple[np.ndarray, ...]]] = {s: [] for s in SETTINGS}
    windows: list[int] = []
    ms_detect: list[float] = []
    ms_total: list[float] = []
    outside: list[float] = []
    ssims: list[float] = []
    unreadable: list[str] = []
    for i, s in enumerate(samples):
        img = cv2.imread(str(s.path), cv2.IMREAD_COLOR)
        if img is None:
            unreadable.append(s.image)
            continue
        h, w = img.shape[:2]
        t0 = time.perf_counter()
        dets = detector.detect(img, still=True)
        t1 = time.perf_counter()
        regions = masker.regions(dets, w, h)
        out = masker.apply(img, regions)
        t2 = time.perf_counter()
        ms_detect.append((t1 - t0) * 1e3)
        windows.append(detector.last_runs)
        ms_total.append((t2 - t0) * 1e3)
        mask = region_mask(regions, w, h)
        valid = [f for f in s.faces if not f.invalid]
        for f in valid:
            tally.add(_keys(f.box[3], f.settings), covered_fraction(mask, f.box) >= PROTECTED)
        faces_mask = np.zeros((h, w), bool)
        for f in s.faces:
            x, y, fw, fh = (round(v) for v in f.box)
            faces_mask[max(0, y) : y + fh, max(0, x) : x + fw] = True
        outside.append(float((mask & ~faces_mask).mean()))
        if ssim:
            ssims.append(_ssim(img, out))
        gts = np.array([f.box for f in s.faces], np.float64).reshape(-1, 4)
        keeps = {
            st: np.array([st in f.settings and not f.invalid for f in s.faces], bool)
            for st in SETTINGS
        }
        for st in SETTINGS:
            ap_in[st].append((*_ap_dets(regions), gts, keeps[st]))
        for name, fn in chosen.items() if perturb else ():
            pregions = masker.regions(detector.detect(fn(img), still=True), w, h)
            pm = region_mask(pregions, w, h)
            for f in valid:
                ptally[name].add(_keys(f.box[3], f.settings), covered_fraction(pm, f.box) >= 0.7)
            for st in SETTINGS:
                pap[name][st].append((*_ap_dets(pregions), gts, keeps[st]))
        if progress:
            progress(i + 1, len(samples))
    result: dict[str, Any] = {
        "dataset": str(root),
        "images": len(samples) - len(unreadable),
        "unreadable": unreadable,
        "faces": tally.total.get("all", 0),
        "recall": {k: tally.recall(k) for k in ("all", "16+", *(b[0] for b in BUCKETS))},
        "faces_by_height": {b[0]: tally.total.get(b[0], 0) for b in BUCKETS},
        "recall_wider": {st: tally.recall(st) for st in SETTINGS},
        "ap": {st: average_precision(ap_in[st]) for st in SETTINGS},
        "masked_outside_faces": float(np.mean(outside)) if outside else None,
        "windows_per_image": round(float(np.mean(windows)), 2) if windows else None,
        "ms_per_image": {
            "detect_median": float(np.median(ms_detect)) if ms_detect else None,
            "detect_mask_median": float(np.median(ms_total)) if ms_total else None,
            "detect_mask_mean": float(np.mean(ms_total)) if ms_total else None,
        },
    }
    if ssim and ssims:
        result["ssim"] = {"mean": float(np.mean(ssims)), "min": float(np.min(ssims))}
    if perturb:
        result["perturbed"] = {
            name: {
                "recall": t.recall("all"),
                "recall_16+": t.recall("16+"),
                "recall_by_height": {b[0]: t.recall(b[0]) for b in BUCKETS},
                "drop": (tally.recall("all") or 0) - (t.recall("all") or 0),
                "drop_16+": (tally.recall("16+") or 0) - (t.recall("16+") or 0),
                "ap": {st: average_precision(pap[name][st]) for st in SETTINGS},
            }
            for name, t in ptally.items()
        }
    return result
