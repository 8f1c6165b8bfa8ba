#!/usr/bin/env python3
"""Photos larger than WIDER's: which schedule protects their faces, and at what cost.

    .venv/bin/python bench/large_photos.py [--dataset DIR] [--factors 1.5,2,4] [--every 3]

WIDER's photos are 1024 px wide; a phone photo is 4032. Each photo (every ``--every``-th) is
upscaled by each factor with its face boxes, and detected three ways: as a video frame (x1.0
tiles), as a single image with the default config (the still schedule up to
``still_max_side``, a video frame's above it), and as a single image with no size limit (x1.5
tiles at any size). Coverage recall (>= 70 % of a box masked) is grouped by the face's height
in the *original* photo, so rows compare the same faces; runs = mean model runs per photo.
Upscaled photos are blurrier than real large ones: read the rows as the schedule's geometry,
not as a phone camera's recall.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"


def run(dataset: Path, factor: float, every: int, still: bool, limit: int | None) -> str:
    sys.path.insert(0, str(REPO))
    from daemon.commands._common import load_config
    from daemon.detect import build_detector
    from daemon.evaluate.coverage import covered_fraction, region_mask
    from daemon.evaluate.dataset import load
    from daemon.evaluate.run import BUCKETS, bucket
    from daemon.mask.masker import Masker

    sets = [] if limit is None else [f"detect.schedule.still_max_side={limit}"]
    cfg = load_config(None, sets)
    assert cfg is not None
    det, masker = build_detector(cfg.detect), Masker(cfg.mask)
    hit = {b[0]: 0 for b in BUCKETS}
    total = dict(hit)
    runs: list[int] = []
    ms: list[float] = []
    for s in load(dataset)[::every]:
        img = cv2.imread(str(s.path))
        img = cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
        h, w = img.shape[:2]
        t = time.perf_counter()
        found = det.detect(img, still=still)
        ms.append((time.perf_counter() - t) * 1e3)
        runs.append(det.last_runs)
        mask = region_mask(masker.regions(found, w, h), w, h)
        for f in s.faces:
            if f.invalid:
                continue
            k = bucket(f.box[3])
            total[k] += 1
            hit[k] += covered_fraction(mask, tuple(v * factor for v in f.box)) >= 0.7
    det.close()
    rec = " | ".join(f"{hit[k] / total[k]:.3f}" if total[k] else "–" for k in total)
    return f"{rec} | {statistics.mean(runs):.1f} | {statistics.median(ms):.0f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=DATA / "wider_val_public")
    ap.add_argument("--factors", default="1.5,2,4")
    ap.add_argument("--every", type=int, default=3, help="every N-th photo of the set")
    args = ap.parse_args()
    print("| upscale | planned as | <16 | 16–32 | 32–64 | ≥64 | runs | ms/photo |")
    print("|" + "---|" * 8)
    for f in (float(x) for x in args.factors.split(",")):
        for name, still, limit in (
            ("video frame", False, None),
            ("single image (default)", True, None),
            ("single image, no size limit", True, 0),
        ):
            row = run(args.dataset, f, args.every, still, limit)
            print(f"| x{f:g} ({round(1024 * f)} px) | {name} | {row} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
