#!/usr/bin/env python3
"""Compare detection schedules: WIDER recall/AP/area and detector cost, one row per schedule.

    .venv/bin/python bench/schedules.py [--dataset DIR] [--video FILE]

Each row runs ``veilcam eval faces --json --no-perturb --no-ssim`` with the schedule's
``--set`` overrides on top of the defaults, and times the detector on the first 50 frames of a
1080p clip, a full pass on each (the live service's use). Rows marked * are the default.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"

NATIVE = "detect.centerface.input_size=null"  # the model as converted, 640x352
SCHEDULES: list[tuple[str, list[str]]] = [
    ("whole frame only", ["detect.schedule.tile_scales=[]"]),
    ("640x352, tiles x1.0, gate 0.06 (old default)", [NATIVE, "detect.schedule.tile_gate=0.06"]),
    ("544x416, tiles x1.0, every tile", ["detect.schedule.tile_gate=0"]),
    ("544x416, tiles x0.6", ["detect.schedule.tile_scales=[0.6]"]),
    ("544x416, tiles x0.8", ["detect.schedule.tile_scales=[0.8]"]),
    ("544x416, tiles x1.0, gate 0.06", ["detect.schedule.tile_gate=0.06"]),
    ("544x416, tiles x1.0, gate 0.04 *", []),
    ("576x384, tiles x1.0, gate 0.04", ["detect.centerface.input_size=[576,384]"]),
    ("672x416, tiles x1.0, gate 0.04", ["detect.centerface.input_size=[672,416]"]),
]  # fmt: skip


def wider(dataset: Path, sets: list[str]) -> dict:
    cmd = [sys.executable, "-m", "daemon", "eval", "faces", "--dataset", str(dataset), "--json",
           "--no-perturb", "--no-ssim"] + [a for s in sets for a in ("--set", s)]  # fmt: skip
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def video_ms(video: Path, sets: list[str], frames: int = 50) -> tuple[float, float]:
    """Median detector ms per 1080p frame, full passes as the service runs them, and model
    runs per frame."""
    sys.path.insert(0, str(REPO))
    from daemon.commands._common import load_config
    from daemon.detect import build_detector
    from daemon.media.decode import VideoReader

    cfg = load_config(None, sets)
    assert cfg is not None
    det = build_detector(cfg.detect)
    ms: list[float] = []
    runs: list[int] = []
    with VideoReader(video) as r:
        for f in r.frames():
            t = time.perf_counter()
            det.detect(f.image)
            ms.append((time.perf_counter() - t) * 1e3)
            runs.append(det.last_runs)
            if len(ms) >= frames:
                break
    return statistics.median(ms[5:]), statistics.mean(runs[5:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=DATA / "wider_val_public")
    ap.add_argument("--video", type=Path, default=DATA / "videos" / "facenet-pytorch_video.mp4")
    args = ap.parse_args()
    head = (
        "| schedule | <16 | 16–32 | 32–64 | ≥64 | AP easy/med/hard | masked outside | "
        "ms/img (runs) | ms/1080p frame, full pass (runs) |"
    )
    print(head)
    print("|" + "---|" * 9)
    for name, sets in SCHEDULES:
        r = wider(args.dataset, sets)
        rec, ap_ = r["recall"], r["ap"]
        ms, runs = video_ms(args.video, sets)
        print(
            f"| {name} | {rec['<16']:.3f} | {rec['16-32']:.3f} | {rec['32-64']:.3f} | "
            f"{rec['>=64']:.3f} | {ap_['easy']:.3f}/{ap_['medium']:.3f}/{ap_['hard']:.3f} | "
            f"{100 * r['masked_outside_faces']:.2f} % | "
            f"{r['ms_per_image']['detect_median']:.0f} ({r['windows_per_image']}) | "
            f"{ms:.0f} ({runs:.1f}) |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
