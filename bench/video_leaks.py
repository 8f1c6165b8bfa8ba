#!/usr/bin/env python3
"""Leaks on every shared clip and its night_ir / low_light copies, in all three modes.

    python3 bench/video_reference.py --out /tmp/veilcam-ref       # once: copies and references
    .venv/bin/python bench/video_leaks.py --refs /tmp/veilcam-ref [--set KEY=VALUE ...]

For each reference in ``REFS/refs`` it runs ``veilcam eval video`` (service at the camera's
pace, ``--fast``, ``veilcam mask``) on the clip the reference was made on and prints, per
condition and mode: reference face-frames leaked (count and share), frames with a leak, the
longest run of leaked frames of one face, and the share of the frame masked outside reference
faces. ``--json FILE`` also writes every clip's figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODES = ("pace", "fast", "mask")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--refs", type=Path, required=True, help="bench/video_reference.py's --out")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--mode", action="append", choices=MODES, help="default: all three")
    ap.add_argument("--conditions", default="clean,night_ir,low_light")
    ap.add_argument("--json", type=Path, help="write every clip's figures here")
    args = ap.parse_args()
    conds = args.conditions.split(",")
    per_clip: dict[str, dict] = {}
    total: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for ref in sorted((args.refs / "refs").glob("*.jsonl")):
        head = json.loads(ref.open().readline())
        if head["condition"] not in conds:
            continue
        cmd = [sys.executable, "-m", "daemon", "eval", "video", head["file"], "--reference"]
        cmd += [str(ref), "--json", *(f"--set={s}" for s in args.set)]
        cmd += [f"--mode={m}" for m in args.mode or MODES]
        p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
        if p.returncode != 0:
            print(f"{ref.name}: {p.stderr.strip()[-500:]}", file=sys.stderr)
            continue
        res = json.loads(p.stdout)["results"]
        per_clip[ref.name] = res
        for mode, r in res.items():
            t = total[(head["condition"], mode)]
            t["face_frames"] += r["face_frames"]
            t["leaked"] += r["leaked"]
            t["frames_with_leak"] += r["frames_with_leak"]
            t["longest_run"] = max(t["longest_run"], r["longest_run"])
            t["frames"] += r["frames_recorded"]
            t["obscured"] += r["frames_obscured"]
            t["outside_sum"] += (r["masked_outside_faces_mean"] or 0) * r["frames_recorded"]
        line = " ".join(
            f"{m} {r['leaked']}/{r['face_frames']} run {r['longest_run']}" for m, r in res.items()
        )
        print(f"{ref.name:70s} {line}", flush=True)
    print()
    print("| condition | mode | face-frames | leaked | leaked % | frames with a leak | longest run "
          "| frames obscured | masked outside faces |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for (cond, mode), t in sorted(total.items()):
        share = 100 * t["leaked"] / t["face_frames"] if t["face_frames"] else 0.0
        outside = 100 * t["outside_sum"] / t["frames"] if t["frames"] else 0.0
        print(
            f"| {cond} | {mode} | {int(t['face_frames'])} | {int(t['leaked'])} | {share:.2f} "
            f"| {int(t['frames_with_leak'])} | {int(t['longest_run'])} | {int(t['obscured'])} "
            f"| {outside:.2f} % |"
        )
    if args.json:
        args.json.write_text(json.dumps(per_clip, indent=1) + "\n")


if __name__ == "__main__":
    main()
