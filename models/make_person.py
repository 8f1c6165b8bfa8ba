"""The person (object) detector step of make_models.py: ``--only person``.

Source: npm ``@mediapipe/objectron@0.4.1675468480`` (Apache-2.0), fetched with ``npm pack``.
Its ``objectron_solution_packed_assets.data`` packs the label map and
``object_detection_ssd_mobilenetv2_oidv4_fp16.tflite`` (SSD-MobileNetV2, 300x300, fp16 weights,
24 Open Images classes); the byte ranges are read from the package's loader script and checked
against the pins below. The model is rewritten as plain float32 (bit-exact), then quantized with
the BlazeFace recipe (ai-edge-quantizer, static int8; the stem conv and the detection heads stay
float: int8 heads clip the class logits), calibrated on the same clip frames as the face models.

Only the files named here are written: the face models stay byte-identical.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

OBJECTRON = {
    "package": "@mediapipe/objectron",
    "version": "0.4.1675468480",
    "tarball": "mediapipe-objectron-0.4.1675468480.tgz",
    "tarball_sha256": "fc3e37b326b05e8f596099c90b3e0931b05a56cd3160b9ac450b621794bac94c",
    "data": "package/objectron_solution_packed_assets.data",
    "loader": "package/objectron_solution_packed_assets_loader.js",
    "model_name": "object_detection_ssd_mobilenetv2_oidv4_fp16.tflite",
    "model_range": (184, 9987912),
    "model_sha256": "d0a5255bf8c4f5a0bc4240741a76c41d5e939f7655078f945f50ab53a9375da6",
    "labels_name": "object_detection_oidv4_labelmap.txt",
    "labels_range": (0, 184),
    "licence": "Apache-2.0",
    "licence_out": "mediapipe-objectron-NOTICE.txt",
}
PERSON_OUT = "ssd_mobilenetv2_oidv4_int8.tflite"
PERSON_FLOAT_REGEX = r"^(float/|box_encodings;$|class_predictions;$)"
# mediapipe/modules/objectron/object_detection_oid_v4_cpu.pbtxt (the graph that runs this model)
SSD_ANCHORS = {
    "num_layers": 6,
    "min_scale": 0.2,
    "max_scale": 0.95,
    "input_size_height": 300,
    "input_size_width": 300,
    "anchor_offset_x": 0.5,
    "anchor_offset_y": 0.5,
    "strides": [16, 32, 64, 128, 256, 512],
    "aspect_ratios": [1.0, 2.0, 0.5, 3.0, 0.3333],
    "reduce_boxes_in_lowest_layer": True,
    "interpolated_scale_aspect_ratio": 1.0,
    "fixed_anchor_size": False,
}
SSD_DECODER = {
    "num_boxes": 1917,
    "num_coords": 4,
    "box_order": "y_center, x_center, h, w (reverse_output_order false)",
    "sigmoid_score": True,
    "apply_exponential_on_box_size": True,
    "x_scale": 10.0,
    "y_scale": 10.0,
    "h_scale": 5.0,
    "w_scale": 5.0,
    "ignore_classes": [0],
}
NOTICE = """\
{package}@{version} (npm), file {model} inside objectron_solution_packed_assets.data.

The package declares "license": "Apache-2.0" in its package.json and ships no separate licence
file. The Apache License 2.0 text is in LICENSES/mediapipe-Apache-2.0.txt (copied from the
mediapipe wheel, same authors: The MediaPipe Authors / Google LLC).

veilcam's {out} is a derivative work: the fp16 weights expanded to float32 and quantized to int8
(make_models.py --only person); no other change to the network.
"""


def _sha(path: Path) -> str:
    from make_models import sha256

    return sha256(path)


def fetch_objectron(work: Path) -> dict[str, Path]:
    """``npm pack`` the pinned package (or reuse it), check it, cut out the model and labels."""
    from make_models import log

    d = work / "npm"
    d.mkdir(parents=True, exist_ok=True)
    tgz = d / OBJECTRON["tarball"]
    if not tgz.exists() or _sha(tgz) != OBJECTRON["tarball_sha256"]:
        log(f"npm pack {OBJECTRON['package']}@{OBJECTRON['version']}")
        spec = f"{OBJECTRON['package']}@{OBJECTRON['version']}"
        subprocess.check_call(["npm", "pack", spec, "--silent"], cwd=d)
    got = _sha(tgz)
    if got != OBJECTRON["tarball_sha256"]:
        raise SystemExit(f"{tgz.name}: sha256 {got} != pinned {OBJECTRON['tarball_sha256']}")
    with tarfile.open(tgz) as tf:
        loader = tf.extractfile(OBJECTRON["loader"]).read().decode()
        data = tf.extractfile(OBJECTRON["data"]).read()
    out = {}
    for key in ("model", "labels"):
        name, (a, b) = OBJECTRON[f"{key}_name"], OBJECTRON[f"{key}_range"]
        m = re.search(
            r'"filename":\s*"[^"]*/' + re.escape(name) + r'",\s*"start":\s*(\d+),\s*"end":\s*(\d+)',
            loader,
        )
        if not m or (int(m[1]), int(m[2])) != (a, b):
            raise SystemExit(f"{name}: the package's loader does not give the range [{a}, {b})")
        dst = d / name
        dst.write_bytes(data[a:b])
        out[key] = dst
    got = _sha(out["model"])
    if got != OBJECTRON["model_sha256"]:
        raise SystemExit(f"{out['model'].name}: sha256 {got} != pinned {OBJECTRON['model_sha256']}")
    log(f"{tgz.name}: tarball, byte ranges and model verified")
    return out


def labels(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def ssd_anchors(o: dict = SSD_ANCHORS):
    """mediapipe SsdAnchorsCalculator (fixed_anchor_size false) -> (N, 4) cx, cy, w, h in [0, 1]."""
    import numpy as np

    n, lo, hi = o["num_layers"], o["min_scale"], o["max_scale"]
    out = []
    for layer, stride in enumerate(o["strides"]):
        scale = lo + (hi - lo) * layer / (n - 1)
        if layer == 0 and o["reduce_boxes_in_lowest_layer"]:
            shapes = [(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
        else:
            nxt = 1.0 if layer == n - 1 else lo + (hi - lo) * (layer + 1) / (n - 1)
            shapes = [(scale, a) for a in o["aspect_ratios"]]
            shapes.append((math.sqrt(scale * nxt), o["interpolated_scale_aspect_ratio"]))
        fh = math.ceil(o["input_size_height"] / stride)
        fw = math.ceil(o["input_size_width"] / stride)
        for y in range(fh):
            for x in range(fw):
                cx, cy = (x + o["anchor_offset_x"]) / fw, (y + o["anchor_offset_y"]) / fh
                out += [(cx, cy, s * math.sqrt(a), s / math.sqrt(a)) for s, a in shapes]
    return np.array(out, np.float32)


def person_input(rgb):
    """mediapipe ImageTransformation (stretch to 300x300) + TfLiteConverter (zero_center)."""
    import cv2
    import numpy as np

    x = cv2.resize(rgb, (300, 300), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    return (x / 127.5 - 1.0)[None]


def decode(out: dict, anchors, cls: int, thr: float):
    """(N, 5) x1, y1, x2, y2, score in [0, 1] units for class ``cls`` (greedy NMS 0.4)."""
    import numpy as np
    from make_models import nms

    box, logit = out["box_encodings"][0], out["class_predictions"][0, :, cls]
    score = 1 / (1 + np.exp(-np.clip(logit.astype(np.float64), -100, 100)))
    k = score >= thr
    if not k.any():
        return np.zeros((0, 5), np.float32)
    b, a, s = box[k], anchors[k], score[k]
    cy = b[:, 0] / 10 * a[:, 3] + a[:, 1]
    cx = b[:, 1] / 10 * a[:, 2] + a[:, 0]
    h = np.exp(b[:, 2] / 5) * a[:, 3]
    w = np.exp(b[:, 3] / 5) * a[:, 2]
    dets = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, s], 1)
    return dets[nms(dets, 0.4)].astype(np.float32)


def evaluate(ref_path: Path, variants: dict, anchors, frames: list, person: int) -> dict:
    """Person-score and box agreement of each variant with the upstream fp16 model."""
    import numpy as np
    from make_models import TFLiteModel, match_count

    ref = TFLiteModel(ref_path)
    res = {}
    for k, p in variants.items():
        m = TFLiteModel(p)
        smax, ssum, sn, boxes_ref, boxes_hit = 0.0, 0.0, 0, 0, 0
        for rgb in frames:
            x = person_input(rgb)
            r, o = _named(ref(x)), _named(m(x))
            rs = 1 / (1 + np.exp(-r["class_predictions"][0, :, person].astype(np.float64)))
            qs = 1 / (1 + np.exp(-o["class_predictions"][0, :, person].astype(np.float64)))
            d = np.abs(rs - qs)
            near = (rs >= 0.05) | (qs >= 0.05)
            smax = max(smax, float(d.max()))
            ssum, sn = ssum + float(d[near].sum()), sn + int(near.sum())
            rd, qd = decode(r, anchors, person, 0.3), decode(o, anchors, person, 0.3)
            boxes_ref += len(rd)
            boxes_hit += len(match_count(rd, qd, 0.5))
        res[k] = {
            "person_score_max_abs_diff_all_anchors": round(smax, 4),
            "person_score_mean_abs_diff_anchors_above_0.05": round(ssum / sn, 4) if sn else None,
            "person_boxes_upstream_at_0.3": boxes_ref,
            "person_boxes_matched_iou_0.5": boxes_hit,
        }
    return res


def _named(out: dict) -> dict:
    """Upstream names are raw_outputs/box_encodings, raw_outputs/class_predictions."""
    return {("box_encodings" if v.shape[-1] == 4 else "class_predictions"): v for v in out.values()}


def _out_name(shape: list) -> str:
    return "box_encodings" if shape[-1] == 4 else "class_predictions"


def build(work: Path, out: Path, calib: list, check: list, ver: dict) -> None:
    """Fetch, expand, quantize, check, time; write the model, its notice and ``ver['person']``."""
    from make_models import bench, blazeface_float32, blazeface_quantize, log

    src = fetch_objectron(work)
    names = labels(src["labels"])
    person = names.index("Person")
    anchors = ssd_anchors()
    if len(anchors) != SSD_DECODER["num_boxes"]:
        raise SystemExit(f"{len(anchors)} anchors != {SSD_DECODER['num_boxes']}")
    d = work / "person"
    d.mkdir(parents=True, exist_ok=True)
    f32 = d / "ssd_oidv4_float32.tflite"
    kept = blazeface_float32(src["model"], f32, output_name=_out_name)
    mixed = d / "ssd_oidv4_int8_mixed.tflite"
    log(f"quantizing the person model ({len(calib)} calibration frames)")
    blazeface_quantize(f32, mixed, [person_input(f) for f in calib], PERSON_FLOAT_REGEX)
    variants = {"float32_expanded": f32, "int8_mixed": mixed}
    ev = evaluate(src["model"], variants, anchors, check, person)
    if ev["float32_expanded"]["person_score_max_abs_diff_all_anchors"] > 1e-4:
        raise SystemExit("person: the float32 rewrite changed the outputs")
    dst = out / PERSON_OUT
    shutil.copyfile(mixed, dst)
    (out / "LICENSES" / OBJECTRON["licence_out"]).write_text(
        NOTICE.format(
            package=OBJECTRON["package"],
            version=OBJECTRON["version"],
            model=OBJECTRON["model_name"],
            out=PERSON_OUT,
        )
    )
    x = person_input(check[len(check) // 2])
    ver["person"] = {
        "file": dst.name,
        "reference": f"{OBJECTRON['model_name']} (upstream fp16-weight model) on LiteRT",
        "labels": names,
        "anchors": SSD_ANCHORS,
        "decoder": SSD_DECODER,
        "quant_mode": "static int8: weights per-channel symmetric, activations per-tensor "
        "asymmetric, calibrated; float32 for the ops in float_ops (detection heads, stem conv)",
        "float_ops_regex": PERSON_FLOAT_REGEX,
        "float_ops": kept,
        "check_frames": len(check),
        "variants": ev,
        "timing_2_threads": {"upstream_fp16": bench(src["model"], x), "int8_mixed": bench(dst, x)},
    }
    log(f"person -> {dst.name}: {json.dumps(ev['int8_mixed'])}")


def manifest_entries(out_dir: Path, ver: dict) -> list[dict]:
    """The manifest entry of the person model (empty until it was built)."""
    from make_models import sha256, tensor_details

    p = ver.get("person")
    if not p:
        return []
    f = out_dir / p["file"]
    return [
        {
            "id": "ssd_mobilenetv2_oidv4",
            "file": f.name,
            "sha256": sha256(f),
            "decoder": "ssd",
            "source": {
                "package": f"npm {OBJECTRON['package']}",
                "version": OBJECTRON["version"],
                "fetch": f"npm pack {OBJECTRON['package']}@{OBJECTRON['version']}",
                "tarball_sha256": OBJECTRON["tarball_sha256"],
                "path": f"{OBJECTRON['data']} bytes [{OBJECTRON['model_range'][0]}, "
                f"{OBJECTRON['model_range'][1]}) = {OBJECTRON['model_name']}",
                "sha256": OBJECTRON["model_sha256"],
                "licence": OBJECTRON["licence"],
                "licence_file": f"LICENSES/{OBJECTRON['licence_out']}",
            },
            "labels": p["labels"],
            "input_size": {"width": 300, "height": 300},
            "input": {
                "layout": "NHWC",
                "dtype": "float32",
                "color_order": "RGB",
                "value_range": [-1.0, 1.0],
                "resize": "stretch to 300x300 (no letterbox)",
                "preprocessing": "x = pixel / 127.5 - 1 (mediapipe TfLiteConverterCalculator)",
            },
            "tensors": tensor_details(f),
            "outputs": {
                "box_encodings": "[1,1917,4] per anchor: y_center, x_center, h, w offsets",
                "class_predictions": "[1,1917,24] per anchor and label: score logit (0: none)",
            },
            "anchors": p["anchors"],
            "decoder_options": p["decoder"],
            "quantization": {
                "tool": "ai-edge-quantizer "
                + str(ver["environment"]["packages"].get("ai-edge-quantizer")),
                "mode": p["quant_mode"],
                "float_ops": p["float_ops"],
                "io": "float32 input and outputs",
                "calibration": ver["calibration"]["description"],
            },
        }
    ]
