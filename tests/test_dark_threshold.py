"""In the dark the detector keeps fainter faces: a face's score falls with the light.

Two WIDER photos under ``night_ir`` (seeded by their line number) hold a face the int8 detector
scores between the dark threshold (0.045) and the daytime one (0.09). With the defaults both are
masked; with the dark threshold switched off (set to the daytime one) neither is found, which is
what the detector did before. The frame given to the detector is never changed.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon.config import Config
from daemon.detect import build_detector
from daemon.detect.config import DetectConfig
from daemon.evaluate.coverage import covered_fraction, region_mask
from daemon.evaluate.perturb import HOME_CAMERA
from daemon.mask.masker import Masker
from daemon.regions import iou

FACES = {5: (810, 308, 31, 39), 19: (568, 322, 58, 51)}  # line of annotations.jsonl -> face


def night_photos(data_dir: Path) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    folder = data_dir / "wider_val_public"
    lines = (folder / "annotations.jsonl").read_text().splitlines()
    out = []
    for n, box in FACES.items():
        rec = json.loads(lines[n])
        assert list(box) in [f["box"] for f in rec["faces"]]
        img = cv2.imread(str(folder / "images" / rec["image"]))
        out.append((HOME_CAMERA["night_ir"](n)(img), box))
    return out


def found(cfg: DetectConfig, photos) -> list[tuple[bool, bool]]:
    """Per photo: whether the detector found the face, and whether the masker covered it."""
    det = build_detector(cfg)
    masker = Masker(Config().mask)
    try:
        res = []
        for img, box in photos:
            before = img.copy()
            dets = det.detect(img, still=True)
            assert np.array_equal(img, before)  # the detector's threshold, not the pixels
            h, w = img.shape[:2]
            mask = region_mask(masker.regions(dets, w, h), w, h)
            hit = any(iou(box, d.box) >= 0.4 for d in dets)
            res.append((hit, covered_fraction(mask, box) >= 0.7))
        return res
    finally:
        det.close()


def test_faint_night_faces_are_masked_with_the_defaults(data_dir: Path) -> None:
    assert found(DetectConfig(), night_photos(data_dir)) == [(True, True), (True, True)]


def test_without_the_dark_threshold_they_were_lost(data_dir: Path) -> None:
    cfg = DetectConfig.model_validate({"centerface": {"dark_score_threshold": 0.09}})
    assert [hit for hit, _ in found(cfg, night_photos(data_dir))] == [False, False]


@pytest.mark.parametrize(
    ("level", "expected"),
    [(0, 0.045), (48, 0.045), (64, 0.0675), (80, 0.09), (200, 0.09)],
)
def test_the_threshold_follows_the_frame_level(level: int, expected: float) -> None:
    det = build_detector(DetectConfig())
    try:
        frame = np.full((240, 320, 3), level, np.uint8)
        assert det._tiled.threshold_for(frame) == pytest.approx(expected)
    finally:
        det.close()


def test_dark_threshold_above_the_daytime_one_is_refused() -> None:
    with pytest.raises(ValueError, match="dark_score_threshold"):
        DetectConfig.model_validate({"centerface": {"dark_score_threshold": 0.2}})
