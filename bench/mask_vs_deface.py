#!/usr/bin/env python3
"""veilcam vs deface 1.5.0 on the same machine: video fps, ms per image, faces protected.

    .venv/bin/python bench/mask_vs_deface.py [--video FILE] [--images DIR] [--n-images N]

deface and onnxruntime are installed into a venv of their own (``--venv``, created on first
use with ``pip install deface==1.5.0 onnx onnxruntime``); they are never dependencies of veilcam.

1. Video: ``veilcam mask VIDEO`` and ``deface VIDEO`` (both with their defaults) are timed as
   whole commands; fps = frames / wall time.
2. Faces protected: deface's own CenterFace (ONNX Runtime, full resolution, threshold 0.2, as
   the deface command runs it) gives deface's face boxes on every frame; a box counts as
   protected by veilcam when the regions veilcam masked on that frame (``--regions``) cover at
   least 70 % of it.
3. Images: median ms per image of the detector (plus masking for veilcam) over the images of
   a WIDER-style folder (all of them unless ``--n-images``), deface at full resolution; each
   side ``--runs`` times, alternating, so that both see the same machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
DEFACE = "deface==1.5.0"

# Runs inside the deface venv: deface's CenterFace on every frame / image, boxes + timings.
DEFACE_PROBE = r"""
import json, sys, time
import numpy as np, imageio.v2 as iio
from deface.centerface import CenterFace
mode, src, n = sys.argv[1], sys.argv[2], int(sys.argv[3])  # argv[4]: JSON out
cf = CenterFace(in_shape=None, backend="onnxrt")
out = {"boxes": [], "ms": []}
if mode == "video":
    frames = iio.get_reader(src)
else:
    names = [json.loads(l)["image"] for l in open(src + "/annotations.jsonl")][:n]
    frames = (iio.imread(src + "/images/" + x) for x in names)
for frame in frames:
    t = time.perf_counter()
    dets, _ = cf(np.asarray(frame)[:, :, :3], threshold=0.2)
    out["ms"].append((time.perf_counter() - t) * 1e3)
    out["boxes"].append([[float(x1), float(y1), float(x2 - x1), float(y2 - y1), float(s)]
                         for x1, y1, x2, y2, s in dets.tolist()])
json.dump(out, open(sys.argv[4], "w"))
"""


def deface_venv(path: Path) -> Path:
    py = path / "bin" / "python"
    if not py.exists():
        print(f"creating {path} with {DEFACE} and onnxruntime ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", DEFACE, "onnx", "onnxruntime"], check=True
        )
    return py


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def frame_count(video: Path) -> int:
    sys.path.insert(0, str(REPO))
    from daemon.media.decode import VideoReader

    with VideoReader(video) as r:
        return sum(1 for _ in r.frames())


def video_bench(py: Path, video: Path, tmp: Path, runs: int, config: Path) -> None:
    from daemon.evaluate.coverage import covered_fraction, region_mask
    from daemon.regions import Region

    n = frame_count(video)
    veil_cmd = [sys.executable, "-m", "daemon", "mask", str(video), "-o", str(tmp / "veil"),
                "--regions", str(tmp / "regions.jsonl"), "--config", str(config), "-q"]  # fmt: skip
    deface_bin = str(py.parent / "deface")
    deface_cmd = [deface_bin, str(video), "-o", str(tmp / "deface.mp4")]
    t_veil, t_deface = [], []
    for _ in range(runs):  # alternate so both see the same machine load
        t_veil.append(timed(veil_cmd))
        t_deface.append(timed(deface_cmd))
    tv, td = statistics.median(t_veil), statistics.median(t_deface)
    print(f"video {video.name}: {n} frames")
    print(f"  veilcam mask  {tv:6.1f} s  {n / tv:6.2f} fps   (median of {runs})")
    print(f"  deface        {td:6.1f} s  {n / td:6.2f} fps")
    print(f"  veilcam / deface fps: {td / tv:.2f}x")

    subprocess.run(
        [str(py), "-c", DEFACE_PROBE, "video", str(video), "0", str(tmp / "deface.json")],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    boxes = json.loads((tmp / "deface.json").read_text())["boxes"]
    lines = [json.loads(x) for x in (tmp / "regions.jsonl").read_text().splitlines() if x]
    w, h = _size(video)
    total = covered = 0
    sizes: list[float] = []
    missed: list[tuple[int, list[float]]] = []
    for i, (line, dets) in enumerate(zip(lines, boxes, strict=False)):
        regs = [
            Region(
                tuple(r["box"]),
                r["label"],
                r["shape"],
                points=tuple(map(tuple, r.get("points", []))),
            )
            for r in line["regions"]
        ]  # type: ignore[arg-type]
        mask = region_mask(regs, w, h)
        for d in dets:
            total += 1
            sizes.append(d[3])
            if covered_fraction(mask, d[:4]) >= 0.7:
                covered += 1
            else:
                missed.append((i, d))
    if len(lines) != len(boxes):
        print(f"  note: {len(lines)} veilcam frames vs {len(boxes)} deface frames")
    print(
        f"  deface finds {total} faces over {len(boxes)} frames (height median "
        f"{statistics.median(sizes) if sizes else 0:.0f} px, min {min(sizes, default=0):.0f})"
    )
    print(f"  veilcam protects {covered} of them ({100 * covered / max(total, 1):.1f} %)")
    for i, d in missed[:10]:
        print(f"    not covered: frame {i} box {[round(v) for v in d[:4]]} score {d[4]:.2f}")


def _size(video: Path) -> tuple[int, int]:
    from daemon.media.decode import VideoReader

    with VideoReader(video) as r:
        return r.size


def image_bench(py: Path, root: Path, n: int, runs: int, config: Path) -> None:
    """Median ms per image, each side ``runs`` times, alternating so both see the same load."""
    import cv2
    import numpy as np

    from daemon.config import load
    from daemon.detect import build_detector
    from daemon.mask.masker import Masker

    cfg = load(config)
    det = build_detector(cfg.detect)
    masker = Masker(cfg.mask)
    names = [json.loads(x)["image"] for x in (root / "annotations.jsonl").read_text().splitlines()]
    n = n or len(names)
    images = [cv2.imread(str(root / "images" / name)) for name in names[:n]]
    ratios, vs, ds = [], [], []
    for _ in range(runs):
        ms = []
        for img in images:
            t = time.perf_counter()
            masker.apply(
                img, masker.regions(det.detect(img, still=True), img.shape[1], img.shape[0])
            )
            ms.append((time.perf_counter() - t) * 1e3)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "deface.json"
            subprocess.run(
                [str(py), "-c", DEFACE_PROBE, "images", str(root), str(n), str(out)],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            dms = json.loads(out.read_text())["ms"]
        vs.append(float(np.median(ms)))
        ds.append(float(np.median(dms)))
        ratios.append(vs[-1] / ds[-1])
    print(f"images {root.name}: {n} images, {runs} alternating runs of each")
    print(f"  veilcam detect+mask  {statistics.median(vs):7.1f} ms per image (median of medians)")
    print(f"  deface detect        {statistics.median(ds):7.1f} ms per image (full resolution)")
    print(
        f"  veilcam / deface time: {statistics.median(ratios):.2f} "
        f"(runs: {', '.join(f'{r:.2f}' for r in ratios)})"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=DATA / "videos" / "facenet-pytorch_video.mp4")
    ap.add_argument("--images", type=Path, default=DATA / "wider_val_public")
    ap.add_argument("--n-images", type=int, default=0, help="first N images (0: all)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each side, alternating")
    ap.add_argument(
        "--venv",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "veilcam-bench"
        / "deface-venv",
    )
    ap.add_argument("--config", type=Path, default=REPO / "config.yaml", help="veilcam config")
    ap.add_argument("--skip-video", action="store_true")
    ap.add_argument("--skip-images", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    py = deface_venv(args.venv)
    print(f"machine: {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_video:
            video_bench(py, args.video, Path(tmp), args.runs, args.config)
        if not args.skip_images:
            image_bench(py, args.images, args.n_images, args.runs, args.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
