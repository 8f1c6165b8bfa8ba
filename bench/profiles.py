#!/usr/bin/env python3
"""Detection profiles per board: what ``detect.schedule.profile: auto`` picks, what it costs
(projected from counted instructions) and what it protects (recall on WIDER, clean and under
the home-camera perturbations: night_ir, low_light, motion_blur, defocus, backlight).

    .venv/bin/python bench/profiles.py [--recall DIR] [--dataset DIR]

The cost table comes from ``daemon.detect.profiles.choose`` (the daemon's own choice) with the
counts in ``daemon/boardcost.py``: the worst case, a crowd that opens every tile. The recall
table runs ``veilcam eval faces --set detect.schedule.profile=NAME`` with the still-image
schedule switched off (photos get the profile's tiles) and ``--perturb`` the home-camera
conditions; ``--recall DIR`` reads (or writes) ``DIR/NAME.json`` instead of running again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from daemon.board import Board  # noqa: E402
from daemon.boardcost import BOARDS  # noqa: E402
from daemon.detect.config import DetectConfig, ScheduleConfig  # noqa: E402
from daemon.detect.profiles import ORDER, Camera, choose, projection  # noqa: E402

DATA = REPO.parent / "shared" / "data"
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
SOURCES = {  # H.264 to decode on the CPU; the recording on the Pi 4's hardware encoder
    "RTSP camera": dict(decode=True, hw_encode=False),
    "RTSP camera, hardware decoder and encoder": dict(decode=False, hw_encode=True),
    "Pi camera": dict(decode=False, hw_encode=False),
    "Pi camera, hardware encoder": dict(decode=False, hw_encode=True),
}
BUCKETS = ("<16", "16-32", "32-64", ">=64")
CONDITIONS = ("night_ir", "low_light", "motion_blur", "defocus", "backlight")


def max_fps(board: Board, profile: str, size: tuple[int, int], src: dict, limit: float) -> float:
    """The highest camera rate (0.5 fps steps) whose projection stays within ``limit`` of the
    cores and half the deadline."""
    cfg = DetectConfig(schedule=ScheduleConfig(profile=profile))
    best = 0.0
    for half in range(1, 121):
        fps = half / 2
        out, _ = choose(cfg, board, Camera(*size, fps, **src), 500.0)
        p = projection(out, board, Camera(*size, fps, **src), 500.0)
        if p is None or 2 * p.latency_ms > 500 or p.share > limit:
            break
        best = fps
    return best


def top(fps: float) -> str:
    return f"{fps:g}" if fps < 60 else "60+"


def cost_table() -> None:
    print(
        "| board | camera | size | auto picks (25 fps) | share of the cores at 25 fps: one "
        "person / crowd | slowest run (crowd) | fps within 70 % / 100 % (one person) |"
    )
    print("|---|---|---|---|---|---|---|")
    for kind in BOARDS:
        board = Board(kind, "")
        for name, src in SOURCES.items():
            if src["hw_encode"] and kind != "pi4":
                continue  # the Pi 5 has no hardware H.264 encoder or decoder
            for label, size in SIZES.items():
                _, c = choose(DetectConfig(), board, Camera(*size, 25.0, **src), 500.0)
                p = c.projection
                assert p is not None
                flag = " (overloaded)" if c.overloaded else ""
                fps70 = max_fps(board, c.profile, size, src, 0.70)
                fps100 = max_fps(board, c.profile, size, src, 1.0)
                print(f"| {kind} | {name} | {label} | {c.profile}{flag} | {p.share:.0%} / "
                      f"{p.share_crowd:.0%} | {p.latency_ms:.0f} ms | {top(fps70)} / "
                      f"{top(fps100)} |")  # fmt: skip
    print()
    print(
        "Every profile at 25 fps (share of the cores with one person; * = a crowd's run takes "
        "over half the deadline; runs = face + person windows with every tile open):"
    )
    print()
    print("| board | camera | size | " + " | ".join(ORDER) + " |")
    print("|---|---|---|" + "---|" * len(ORDER))
    for kind in BOARDS:
        board = Board(kind, "")
        for name, src in SOURCES.items():
            if src["hw_encode"] and kind != "pi4":
                continue
            for label, size in SIZES.items():
                cells = []
                for prof in ORDER:
                    cfg = DetectConfig(schedule=ScheduleConfig(profile=prof))
                    _, c = choose(cfg, board, Camera(*size, 25.0, **src), 500.0)
                    p = c.projection
                    assert p is not None
                    late = "*" if 2 * p.latency_ms > 500 else ""
                    cells.append(f"{p.share:.0%}{late} ({p.face_runs}+{p.people_runs} runs)")
                print(f"| {kind} | {name} | {label} | " + " | ".join(cells) + " |")


def recall(dataset: Path, out: Path | None) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for prof in ORDER:
        path = out / f"{prof}.json" if out else None
        if path and path.exists():
            found[prof] = json.loads(path.read_text())
            continue
        cmd = [sys.executable, "-m", "daemon", "eval", "faces", "--dataset", str(dataset),
               "--set", f"detect.schedule.profile={prof}",
               "--set", "detect.schedule.still_tile_scales=null",
               "--set", "detect.schedule.still_tile_gate=null",
               "--perturb", ",".join(CONDITIONS), "--no-ssim", "--json"]  # fmt: skip
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
        found[prof] = json.loads(r.stdout)
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(r.stdout)
    return found


def recall_table(found: dict[str, dict]) -> None:
    heads = " | ".join(BUCKETS)
    print(f"| condition | profile | {heads} | all | model runs per photo |")
    print("|---|---|" + "---|" * (len(BUCKETS) + 2))
    for cond in ("clean", *CONDITIONS):
        for prof, d in found.items():
            p = d if cond == "clean" else d["perturbed"].get(cond)
            if p is None:
                continue  # an older JSON without this condition
            by = d["recall"] if cond == "clean" else p["recall_by_height"]
            total = d["recall"]["all"] if cond == "clean" else p["recall"]
            cells = " | ".join(f"{by[b]:.3f}" for b in BUCKETS)
            print(f"| {cond} | {prof} | {cells} | {total:.3f} | {d['windows_per_image']} |")
    n = next(iter(found.values()))
    print(f"\n({n['images']} photos, {n['faces']} faces; by height: {n['faces_by_height']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=DATA / "wider_val_public")
    ap.add_argument("--recall", type=Path, help="read/write each profile's eval JSON here")
    ap.add_argument("--no-recall", action="store_true", help="only the cost tables")
    args = ap.parse_args()
    cost_table()
    if not args.no_recall:
        print()
        recall_table(recall(args.dataset, args.recall))


if __name__ == "__main__":
    main()
