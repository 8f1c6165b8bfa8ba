#!/usr/bin/env python3
"""Person sensor and head masks on the hand-counted frames of intel_one-by-one-person-detection.mp4.

    .venv/bin/python bench/people_clip.py                 # veilcam run --fast, default config
    .venv/bin/python bench/people_clip.py --regions FILE  # score an existing --regions file

tests/data/intel_one_by_one_people.json counts the people (seen from behind) on 36 frames and
gives each visible head's approximate centre. Printed: the share of frames with a person in
view where a person track is on (what drives the "Person" sensor: with ``mask.people: heads``
each person track is a masked head region), the share of visible heads whose centre lies in a
masked region (face or person), and person regions on frames with nobody in view.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TRUTH = REPO / "tests" / "data" / "intel_one_by_one_people.json"
CLIP = REPO.parent / "shared" / "data" / "videos" / "intel_one-by-one-person-detection.mp4"


def run_service(tmp: Path) -> Path:
    cfg = tmp / "c.yaml"
    cfg.write_text(
        f"camera:\n  source: {CLIP}\n  loop: false\nrecording:\n  path: {tmp / 'rec'}\n"
        "  min_free_percent: 0\nmqtt:\n  enabled: false\n"
    )
    regions = tmp / "regions.jsonl"
    cmd = [sys.executable, "-m", "daemon", "run", "--config", str(cfg), "--regions", str(regions)]
    subprocess.run([*cmd, "--fast"], cwd=REPO, check=True, capture_output=True)
    return regions


def score(regions_file: Path) -> dict:
    truth = json.loads(TRUTH.read_text())["frames"]
    by_frame = {}
    for line in regions_file.read_text().splitlines():
        rec = json.loads(line)
        by_frame[rec["frame"]] = rec.get("regions", [])
    with_people = sensor_on = heads = heads_masked = empty = empty_false = 0
    for t in truth:
        regs = by_frame.get(t["frame"], [])
        persons = [r for r in regs if r["label"] == "person"]
        if t["people"]:
            with_people += 1
            sensor_on += bool(persons)
        else:
            empty += 1
            empty_false += bool(persons)
        for h in t["heads"]:
            if h is None:
                continue
            heads += 1
            heads_masked += any(
                r["box"][0] <= h[0] <= r["box"][0] + r["box"][2]
                and r["box"][1] <= h[1] <= r["box"][1] + r["box"][3]
                for r in regs
            )
    return {
        "frames_with_people": with_people,
        "person_on_share": sensor_on / with_people,
        "heads": heads,
        "heads_masked_share": heads_masked / heads,
        "empty_frames": empty,
        "empty_frames_with_person_track": empty_false,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--regions", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="veilcam-pc-") as d:
        regions = args.regions or run_service(Path(d))
        print(json.dumps(score(regions), indent=1))


if __name__ == "__main__":
    main()
