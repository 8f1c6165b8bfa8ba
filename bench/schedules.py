#!/usr/bin/env python3
"""Compare detection schedules: WIDER recall/AP/area and detector cost, one row per schedule.

    .venv/bin/python bench/schedules.py [--dataset DIR] [--video FILE]   # video frames
    .venv/bin/python bench/schedules.py --still [--dataset DIR]          # single images

Video frames: each row runs ``veilcam eval faces --json --no-perturb --no-ssim`` with the
schedule's ``--set`` overrides on top of the defaults and with the still schedule switched off
(so photos get the row's tiles; single images still use one tile per candidate), and times the
detector on the first 50 frames of a 1080p clip, a full pass on each (the live service's use).
``--still``: the schedules for single images, with the recall drops under JPEG q30 and noise.
Rows marked * are the default.
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


STILL = "detect.schedule.still_"
CAP = "detect.schedule.tile_gate_max_px="
FRAME_ON_PHOTOS = [STILL + "tile_scales=null", STILL + "tile_gate=null"]
STILL_SCHEDULES: list[tuple[str, list[str]]] = [
    ("tiles x1.0, gate 0.04 (the video schedule)", FRAME_ON_PHOTOS),
    ("tiles x1.5, gate 0.04", [STILL + "tile_gate=0.04"]),
    ("tiles x1.5, gate 0.05, cap 64 *", []),
    ("tiles x1.5, gate 0.06", [STILL + "tile_gate=0.06"]),
    ("tiles x1.5, gate 0.07", [STILL + "tile_gate=0.07"]),
    ("tiles x1.5, gate 0.08", [STILL + "tile_gate=0.08"]),
    ("tiles x1.5, gate 0.06, no cap", [STILL + "tile_gate=0.06", CAP + "0"]),
    ("tiles x1.5, gate 0.06, cap 32", [STILL + "tile_gate=0.06", CAP + "32"]),
    ("tiles x2.0, gate 0.06", [STILL + "tile_scales=[2.0]", STILL + "tile_gate=0.06"]),
    ("tiles x1.0 + x1.5, gate 0.06", [STILL + "tile_scales=[1.0,1.5]", STILL + "tile_gate=0.06"]),
]  # fmt: skip


def wider(dataset: Path, sets: list[str], perturb: bool = False) -> dict:
    cmd = [sys.executable, "-m", "daemon", "eval", "faces", "--dataset", str(dataset), "--json",
           "--no-ssim"] + ([] if perturb else ["--no-perturb"]) + [
           a for s in sets for a in ("--set", s)]  # fmt: skip
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


def still(dataset: Path) -> int:
    print(
        "| still schedule | <16 | 16–32 | 32–64 | ≥64 | AP easy/med/hard | masked outside | "
        "runs | JPEG q30 / noise drop |"
    )
    print("|" + "---|" * 9)
    for name, sets in STILL_SCHEDULES:
        r = wider(dataset, sets, perturb=True)
        rec, ap_, p = r["recall"], r["ap"], r["perturbed"]
        print(
            f"| {name} | {rec['<16']:.3f} | {rec['16-32']:.3f} | {rec['32-64']:.3f} | "
            f"{rec['>=64']:.3f} | {ap_['easy']:.3f}/{ap_['medium']:.3f}/{ap_['hard']:.3f} | "
            f"{100 * r['masked_outside_faces']:.2f} % | {r['windows_per_image']} | "
            f"{100 * p['jpeg_q30']['drop']:.1f} / {100 * p['noise_sigma10']['drop']:.1f} |",
            flush=True,
        )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=DATA / "wider_val_public")
    ap.add_argument("--video", type=Path, default=DATA / "videos" / "facenet-pytorch_video.mp4")
    ap.add_argument("--still", action="store_true", help="the schedules for single images")
    args = ap.parse_args()
    if args.still:
        return still(args.dataset)
    head = (
        "| schedule | <16 | 16–32 | 32–64 | ≥64 | AP easy/med/hard | masked outside | "
        "ms/img (runs) | ms/1080p frame, full pass (runs) |"
    )
    print(head)
    print("|" + "---|" * 9)
    for name, sets in SCHEDULES:
        r = wider(args.dataset, FRAME_ON_PHOTOS + sets)
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
