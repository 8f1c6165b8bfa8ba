"""WIDER AP and ``veilcam eval faces`` on a real annotated set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from daemon.evaluate.coverage import covered_fraction, region_mask
from daemon.evaluate.wider_ap import average_precision
from daemon.regions import Region


def _img(dets: list[list[float]], scores: list[float], gts: list[list[float]], keep: list[bool]):
    return (
        np.array(dets, float).reshape(-1, 4),
        np.array(scores, float),
        np.array(gts, float).reshape(-1, 4),
        np.array(keep, bool),
    )


def test_ap_is_one_for_perfect_detections_and_drops_with_a_confident_false_positive() -> None:
    gts = [[10, 10, 20, 20], [100, 100, 30, 30]]
    perfect = _img(gts, [0.9, 0.8], gts, [True, True])
    assert average_precision([perfect]) == pytest.approx(1.0)
    fp = _img([[300, 300, 20, 20], *gts], [0.95, 0.9, 0.8], gts, [True, True])
    assert average_precision([fp]) < 0.9


def test_ap_ignores_detections_of_faces_outside_the_setting() -> None:
    gts = [[10, 10, 20, 20], [100, 100, 30, 30]]
    # the best-scored detection hits an ignored face: neither a hit nor a false positive
    sample = _img([gts[1], gts[0]], [0.95, 0.9], gts, [True, False])
    assert average_precision([sample]) == pytest.approx(1.0)


def test_missed_face_halves_recall() -> None:
    gts = [[10, 10, 20, 20], [100, 100, 30, 30]]
    ap = average_precision([_img([gts[0]], [0.9], gts, [True, True])])
    assert ap == pytest.approx(0.5, abs=0.01)


def test_coverage_counts_the_inscribed_ellipse_only() -> None:
    mask = region_mask([Region((0, 0, 100, 100), shape="ellipse")], 200, 200)
    assert covered_fraction(mask, (0, 0, 100, 100)) == pytest.approx(np.pi / 4, abs=0.02)
    assert covered_fraction(mask, (25, 25, 50, 50)) == 1.0
    assert covered_fraction(mask, (150, 150, 20, 20)) == 0.0


def test_eval_command_reports_every_metric(data_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from daemon.cli import main

    code = main(["eval", "faces", "--dataset", str(data_dir / "dlib_faces"), "--json"])
    assert code == 0
    r = json.loads(capsys.readouterr().out)
    assert r["images"] == 9 and r["faces"] == 43
    assert r["recall"]["all"] == 1.0  # all dlib faces are 37 px or more
    assert set(r["recall"]) >= {"<16", "16-32", "32-64", ">=64"}
    assert set(r["ap"]) == {"easy", "medium", "hard"}
    assert 0 <= r["masked_outside_faces"] < 0.2
    assert 0.5 < r["ssim"]["min"] <= r["ssim"]["mean"] < 1
    assert r["ms_per_image"]["detect_mask_median"] > 0
    assert set(r["perturbed"]) == {
        "brightness+30%",
        "brightness-30%",
        "contrast+30%",
        "contrast-30%",
        "saturation+30%",
        "saturation-30%",
        "noise_sigma10",
        "jpeg_q30",
        "night_ir",
        "low_light",
        "motion_blur",
        "defocus",
        "backlight",
    }
    assert all(v["recall"] >= 0.9 for v in r["perturbed"].values())
    assert all(set(v["ap"]) == {"easy", "medium", "hard"} for v in r["perturbed"].values())


def test_eval_command_names_a_missing_dataset(tmp_path: Path, capsys) -> None:
    from daemon.cli import main

    assert main(["eval", "faces", "--dataset", str(tmp_path)]) == 1
    assert "annotations.jsonl" in capsys.readouterr().err
