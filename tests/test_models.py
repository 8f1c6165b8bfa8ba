"""Every committed model loads, matches its manifest hash, and protects the dlib faces."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from daemon.detect import build_detector
from daemon.detect.config import DetectConfig
from daemon.detect.manifest import read_manifest, sha256_of, verified_model
from daemon.detect.runtime import TFLiteModel
from daemon.evaluate.coverage import protected, region_mask
from daemon.mask.masker import Masker

REPO_MODELS = Path(__file__).resolve().parent.parent / "models"
BACKEND = {
    "centerface_640x352": "centerface",
    "centerface_320x192": "centerface",
    "blazeface_short_range": "blazeface",
    "blazeface_full_range": "blazeface",
}
PEOPLE = {"ssd_mobilenetv2_oidv4"}  # daemon/detect/ssd_people.py; checked in test_people.py


def _names() -> list[str]:
    return sorted(read_manifest(REPO_MODELS))


def test_manifest_lists_every_model_and_nothing_else() -> None:
    assert set(BACKEND) | PEOPLE == set(_names())


def test_every_model_names_its_source_and_an_existing_licence_file() -> None:
    for name, info in read_manifest(REPO_MODELS).items():
        src = info.meta["source"]
        assert src["licence"] and len(src["sha256"]) == 64, name
        assert (REPO_MODELS / src["licence_file"]).is_file(), name
    person = read_manifest(REPO_MODELS)["ssd_mobilenetv2_oidv4"].meta
    assert person["source"]["fetch"] == "npm pack @mediapipe/objectron@0.4.1675468480"
    assert person["source"]["sha256"] == (
        "d0a5255bf8c4f5a0bc4240741a76c41d5e939f7655078f945f50ab53a9375da6"
    )
    assert {"Person", "Car", "Dog", "Cat"} <= set(person["labels"])


@pytest.mark.parametrize("name", sorted(set(BACKEND) | PEOPLE))
def test_model_matches_its_hash_and_loads(name: str) -> None:
    info = verified_model(name, REPO_MODELS)
    assert sha256_of(info.path) == info.sha256
    model = TFLiteModel(info.path, threads=1)
    assert model.width > 0 and model.height > 0


@pytest.mark.parametrize("name", sorted(BACKEND))
def test_model_protects_every_dlib_face(name: str, data_dir: Path) -> None:
    backend = BACKEND[name]
    cfg = {"backend": backend, "models_dir": str(REPO_MODELS)}
    cfg[backend] = {"model": name}
    det = build_detector(DetectConfig.model_validate(cfg))
    masker = Masker()
    missed = []
    root = data_dir / "dlib_faces"
    for line in (root / "annotations.jsonl").read_text().splitlines():
        ann = json.loads(line)
        img = cv2.imread(str(root / "images" / ann["image"]))
        assert img is not None, ann["image"]
        h, w = img.shape[:2]
        mask = region_mask(masker.regions(det.detect(img), w, h), w, h)
        boxes = [f["box"] for f in ann["faces"]]
        missed += [
            (ann["image"], b) for b, ok in zip(boxes, protected(mask, boxes), strict=True) if not ok
        ]
    assert missed == []
