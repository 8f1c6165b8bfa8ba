#!/usr/bin/env python3
"""False masks on the demo's sample clip: how much of each frame is masked outside every person.

    .venv/bin/python bench/false_masks.py                      # veilcam run --fast, default config
    .venv/bin/python bench/false_masks.py --mode pace --set detect.centerface.score_threshold=0.12
    .venv/bin/python bench/false_masks.py --regions FILE       # score an existing --regions file

The clip is ``vtest.avi`` from Debian's opencv-doc (PETS 2009 S2.L1, the README's demo clip);
``../shared/data/people_pets09`` boxes the people of every 8th frame (frame N there is the N-th
decoded frame). On those frames it prints the share of the frame masked, the share masked
outside every annotated person (boxes grown by 5 px, ``ignore`` boxes count as people), the
regions per frame and how many lie mostly (> 50 %) outside people. Faces there are 8-12 px:
a mask outside a person hides no face, it only makes the recording look broken.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from daemon.evaluate.coverage import region_mask  # noqa: E402
from daemon.evaluate.video import load_regions  # noqa: E402

CLIP = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
PEOPLE = REPO.parent / "shared" / "data" / "people_pets09" / "annotations.jsonl"
GROW = 5


def run_service(mode: str, overrides: list[str], tmp: Path) -> Path:
    cfg = tmp / "c.yaml"
    doc = f"camera:\n  source: {CLIP}\n  loop: false\nrecording:\n  path: {tmp / 'rec'}\n"
    cfg.write_text(doc + "  min_free_percent: 0\nmqtt:\n  enabled: false\n")
    regions = tmp / "regions.jsonl"
    cmd = [sys.executable, "-m", "daemon", "run", "--config", str(cfg), "--regions", str(regions)]
    if mode == "fast":
        cmd.append("--fast")
    if overrides:  # the run command has no --set: write them into the config
        import yaml

        from daemon.commands._common import _set

        d = yaml.safe_load(cfg.read_text())
        for item in overrides:
            k, _, v = item.partition("=")
            _set(d, k.strip(), yaml.safe_load(v))
        cfg.write_text(yaml.safe_dump(d))
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    return regions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mode", choices=["fast", "pace"], default="fast")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--regions", type=Path, help="score this --regions file of vtest.avi instead")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="veilcam-fm-") as d:
        regions = args.regions or run_service(args.mode, args.set, Path(d))
        masked = load_regions(regions)
    ann = [json.loads(line) for line in PEOPLE.read_text().splitlines() if line.strip()]
    share, outside, n_regions, n_out, missing = [], [], [], [], 0
    for a in ann:
        rec = masked.get(a["frame"] - 1)
        if rec is None:
            missing += 1
            continue
        w, h = a["width"], a["height"]
        m = region_mask(rec["regions"], w, h)
        if rec["obscured"]:
            m[:] = True
        people = m.copy()
        people[:] = False
        for p in a["people"]:
            x, y, bw, bh = p["box"]
            x1, y1 = max(0, int(x) - GROW), max(0, int(y) - GROW)
            people[y1 : int(y + bh) + GROW + 1, x1 : int(x + bw) + GROW + 1] = True
        share.append(float(m.mean()))
        outside.append(float((m & ~people).mean()))
        n_regions.append(len(rec["regions"]))
        mostly = 0
        for r in rec["regions"]:
            rm = region_mask([r], w, h)
            if rm.sum() and (rm & ~people).sum() > 0.5 * rm.sum():
                mostly += 1
        n_out.append(mostly)
    n = len(share)
    print(f"vtest.avi, {n} annotated frames scored ({missing} not recorded), mode {args.mode}")
    print(f"  masked:                    {100 * statistics.mean(share):.2f} % of the frame")
    print(f"  masked outside people:     {100 * statistics.mean(outside):.2f} % of the frame")
    print(f"  regions per frame:         {statistics.mean(n_regions):.1f} "
          f"({statistics.mean(n_out):.1f} mostly outside people)")  # fmt: skip


if __name__ == "__main__":
    main()
