"""``veilcam eval video CLIP --reference REF.jsonl``: leaks in masked video, as a viewer sees them.

With ``--regions FILE`` (repeatable) it scores what a run already wrote. Without, it runs the
modes it is asked for (``--mode``, default all three) on CLIP, each as its own process with the
given config, recording to a temporary folder that is deleted afterwards:

* ``pace``: ``veilcam run`` at the camera's pace (the file played at its own frame rate);
* ``fast``: ``veilcam run --fast`` (every frame, as fast as the pipeline goes);
* ``mask``: ``veilcam mask`` (offline, with look-ahead).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

MODES = ("pace", "fast", "mask")


def _pct(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f} %"


def table(name: str, r: dict[str, Any]) -> str:
    lines = [
        f"{name}: {r['frames_recorded']} of {r['frames_in_reference']} frames recorded, "
        f"{r['frames_obscured']} obscured",
        f"  reference face-frames leaked  {r['leaked']} of {r['face_frames']} "
        f"({_pct(r['leaked_share'])}); frames with a leak {r['frames_with_leak']}; "
        f"longest run {r['longest_run']} frames",
    ]
    for k, c in r["by_height"].items():
        lines.append(
            f"  height {k:<7} {c['leaked']:5d} of {c['face_frames']:5d} "
            f"({_pct(c['leaked_share'])}), longest run {c['longest_run']}"
        )
    lines.append(
        f"  masked: {_pct(r['masked_share_mean'])} of each frame, "
        f"{_pct(r['masked_outside_faces_mean'])} outside reference faces (mean)"
    )
    if r["face_frames_not_recorded"]:
        lines.append(f"  face-frames in frames not recorded: {r['face_frames_not_recorded']}")
    return "\n".join(lines)


def _config_for(cfg_dump: dict[str, Any], clip: Path, tmp: Path) -> Path:
    """The evaluated config, made to play ``clip`` once, record under ``tmp`` and stay offline."""
    doc = json.loads(json.dumps(cfg_dump))
    doc.setdefault("camera", {}).update(source=str(clip), loop=False)
    doc.setdefault("recording", {}).update(path=str(tmp / "rec"), min_free_percent=0)
    doc.setdefault("mqtt", {})["enabled"] = False
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run_mode(mode: str, clip: Path, config: Path, tmp: Path) -> Path:
    """Run one mode as its own process; returns its regions file."""
    regions = tmp / f"{mode}.regions.jsonl"
    base = [sys.executable, "-m", "daemon"]
    if mode == "mask":
        cmd = [*base, "mask", str(clip), "--output", str(tmp / "mask"), "--quiet"]
    else:
        cmd = [*base, "run", "--source", str(clip), *(["--fast"] if mode == "fast" else [])]
    cmd += ["--config", str(config), "--regions", str(regions)]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{mode}: exit code {p.returncode}: {p.stderr.strip()[-2000:]}")
    return regions


def run(args: argparse.Namespace) -> int:
    from daemon.commands._common import load_config
    from daemon.evaluate.video import VideoEvalError, check_clip, load_reference, load_regions
    from daemon.evaluate.video import score as score_video

    if not args.clip or not args.reference:
        print("veilcam eval video: needs CLIP and --reference REF.jsonl", file=sys.stderr)
        return 2
    clip = Path(args.clip)
    try:
        ref = load_reference(Path(args.reference))
        check_clip(ref, clip)
    except VideoEvalError as exc:
        print(f"veilcam eval video: {exc}", file=sys.stderr)
        return 1
    results: dict[str, Any] = {}
    try:
        if args.regions:
            for path in args.regions:
                results[path] = score_video(ref, load_regions(Path(path))).as_dict()
        else:
            cfg = load_config(args.config, args.set)
            if cfg is None:
                return 2
            with tempfile.TemporaryDirectory(prefix="veilcam-eval-") as d:
                config = _config_for(cfg.model_dump(mode="json"), clip.resolve(), Path(d))
                for mode in args.mode or MODES:
                    regions = run_mode(mode, clip.resolve(), config, Path(d))
                    results[mode] = score_video(ref, load_regions(regions)).as_dict()
    except (VideoEvalError, RuntimeError) as exc:
        print(f"veilcam eval video: {exc}", file=sys.stderr)
        return 1
    out = {"clip": str(clip), "reference": ref.header, "results": results}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{clip} ({ref.header.get('condition', '?')}), reference: {ref.header['detector']}")
        print("\n".join(table(k, v) for k, v in results.items()))
    return 0
