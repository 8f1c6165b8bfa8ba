"""``veilcam eval faces --dataset DIR [--json]``: how well the configured detector and masker
protect the faces of an annotated set (coverage recall, WIDER AP, damage, speed, robustness).

``veilcam eval video CLIP --reference REF.jsonl``: leaked face-frames in masked video
(``daemon/commands/eval_video.py``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["faces", "people", "video"], help="what to evaluate")
    p.add_argument("clip", nargs="?", help="video: the clip the reference was made on")
    p.add_argument("--dataset", help="faces, people: folder with images/ and annotations.jsonl")
    p.add_argument("--reference", metavar="FILE", help="video: reference faces (JSON Lines)")
    p.add_argument(
        "--regions",
        action="append",
        metavar="FILE",
        help="video: score this --regions output instead of running the modes (repeatable)",
    )
    p.add_argument(
        "--mode",
        action="append",
        choices=["pace", "fast", "mask"],
        help="video: run only these modes (repeatable; default all three)",
    )
    p.add_argument("--config", help="config file (default: built-in defaults)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. detect.schedule.tile_scales=[1.0]",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--no-perturb", action="store_true", help="skip the perturbed runs")
    p.add_argument(
        "--perturb",
        metavar="NAMES",
        help="only these perturbations, comma-separated (e.g. night_ir,low_light)",
    )
    p.add_argument("--no-ssim", action="store_true", help="skip SSIM")
    p.add_argument(
        "--people",
        action="store_true",
        help="faces: also run the person model (detect.people) and mask per mask.people, as "
        "veilcam mask does on photos (AP stays the face model's)",
    )


def _f(v: float | None, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _table(r: dict[str, Any]) -> str:
    rec, n = r["recall"], r["faces_by_height"]
    lines = [
        f"dataset {r['dataset']}: {r['images']} images, {r['faces']} faces (invalid left out)",
        "coverage recall (face protected when >= 70 % of its box is masked)",
        f"  all faces        {_f(rec['all'])}",
        f"  16 px and more   {_f(rec['16+'])}",
    ]
    lines += [f"  height {k:<9} {_f(rec[k])}  ({n[k]} faces)" for k in n]
    lines += [f"  WIDER {k:<10} {_f(v)}" for k, v in r["recall_wider"].items()]
    lines.append("AP at IoU 0.5 (WIDER protocol)")
    lines += [f"  {k:<16} {_f(v)}" for k, v in r["ap"].items()]
    lines.append(f"area masked outside faces  {_f(100 * r['masked_outside_faces'], 2)} %")
    if "ssim" in r:
        lines.append(
            f"SSIM input vs output       mean {_f(r['ssim']['mean'])}, min {_f(r['ssim']['min'])}"
        )
    ms = r["ms_per_image"]
    lines.append(
        f"ms per image               {_f(ms['detect_mask_median'], 1)} median "
        f"(detect {_f(ms['detect_median'], 1)}), {_f(ms['detect_mask_mean'], 1)} mean, "
        f"{r['windows_per_image']} model runs per image (mean)"
    )
    if "perturbed" in r:
        lines.append(
            "recall under perturbations (all faces / 16 px and more; drop in points), AP hard"
        )
        for k, v in r["perturbed"].items():
            lines.append(
                f"  {k:<16} {_f(v['recall'])} ({100 * v['drop']:+.1f})   "
                f"{_f(v['recall_16+'])} ({100 * v['drop_16+']:+.1f})   {_f(v['ap']['hard'], 3)}"
            )
    if r["unreadable"]:
        lines.append(f"unreadable images: {', '.join(r['unreadable'])}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from daemon.commands._common import load_config
    from daemon.detect import ModelError, build_detector
    from daemon.evaluate.dataset import DatasetError
    from daemon.evaluate.perturb import PERTURBATIONS
    from daemon.evaluate.run import evaluate
    from daemon.mask.masker import Masker

    if args.what == "video":
        from daemon.commands import eval_video

        return eval_video.run(args)
    if args.what == "people":
        return _people(args)
    if not args.dataset:
        print("veilcam eval faces: needs --dataset DIR", file=sys.stderr)
        return 2
    unknown = sorted(set(args.perturb.split(",")) - set(PERTURBATIONS)) if args.perturb else []
    if unknown:
        print(
            f"veilcam eval: unknown perturbation {', '.join(unknown)} "
            f"(known: {', '.join(PERTURBATIONS)})",
            file=sys.stderr,
        )
        return 2
    cfg = load_config(args.config, args.set)
    if cfg is None:
        return 2
    try:
        if args.people:
            from daemon.detect.combined import build_frame_detector

            detector = build_frame_detector(cfg.detect, every=1)
        else:
            detector = build_detector(cfg.detect)
    except ModelError as exc:
        print(f"veilcam eval: {exc}", file=sys.stderr)
        return 1
    bar = tqdm(unit="img", file=sys.stderr, disable=not sys.stderr.isatty())

    def progress(i: int, n: int) -> None:
        bar.total = n
        bar.update(1)

    try:
        result = evaluate(
            detector,
            Masker(cfg.mask),
            Path(args.dataset),
            limit=args.limit,
            perturb=not args.no_perturb,
            perturbations=args.perturb.split(",") if args.perturb else None,
            ssim=not args.no_ssim,
            progress=progress,
        )
    except DatasetError as exc:
        print(f"veilcam eval: {exc}", file=sys.stderr)
        return 1
    finally:
        bar.close()
        detector.close()
    result["config"] = {
        "detect": cfg.detect.model_dump(mode="json"),
        "mask": cfg.mask.model_dump(mode="json"),
    }
    print(json.dumps(result, indent=2) if args.json else _table(result))
    return 0 if not result["unreadable"] else 1


def _people(args: argparse.Namespace) -> int:
    """``veilcam eval people --dataset DIR``: the configured person detector (detect.people),
    every image a single still (whole frame and tiles), recall and AP at IoU 0.5."""
    from daemon.commands._common import load_config
    from daemon.detect import ModelError
    from daemon.detect.profiles import concrete
    from daemon.detect.ssd_people import PeopleDetector
    from daemon.evaluate.dataset import DatasetError
    from daemon.evaluate.people import evaluate_people, table

    if not args.dataset:
        print("veilcam eval people: needs --dataset DIR", file=sys.stderr)
        return 2
    cfg = load_config(args.config, args.set)
    if cfg is None:
        return 2
    try:
        dcfg = concrete(cfg.detect)
        det = PeopleDetector(dcfg.people, dcfg.models_dir, dcfg.threads)
    except ModelError as exc:
        print(f"veilcam eval: {exc}", file=sys.stderr)
        return 1
    try:
        result = evaluate_people(det.detect, Path(args.dataset), limit=args.limit)
    except DatasetError as exc:
        print(f"veilcam eval: {exc}", file=sys.stderr)
        return 1
    finally:
        det.close()
    result["config"] = cfg.detect.people.model_dump(mode="json")
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0 if not result["unreadable"] else 1
