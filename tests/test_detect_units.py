"""Pieces of the detector that need no model: NMS, letterbox, tile planning, manifest checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.detect.config import DetectConfig, ScheduleConfig
from daemon.detect.errors import ModelError
from daemon.detect.letterbox import letterbox
from daemon.detect.manifest import find_models_dir, verified_model
from daemon.detect.nms import nms
from daemon.detect.tiling import _gated, plan


def test_nms_drops_overlapping_weaker_boxes_and_keeps_separate_ones() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.6, 0.9, 0.5], np.float32)
    assert nms(boxes, scores, 0.3).tolist() == [1, 2]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.3).size == 0


def test_letterbox_keeps_aspect_and_maps_back() -> None:
    img = np.full((1080, 1920, 3), 200, np.uint8)
    canvas, s = letterbox(img, 640, 352)
    assert canvas.shape == (352, 640, 3)
    assert s == pytest.approx(1 / 3.0685, rel=1e-3)  # 352 / 1080 limits
    assert canvas[:, : round(1920 * s) - 1].min() == 200
    assert canvas[:, round(1920 * s) + 1 :].max() == 0  # padding right, no distortion


def test_tiles_cover_a_1080p_frame_with_overlap_so_every_small_face_is_whole_in_one() -> None:
    sched = ScheduleConfig(whole_frame=True, tile_scales=[1.0], tile_overlap=48)
    wins = plan(1920, 1080, 640, 352, sched)
    assert wins[0].scale == pytest.approx(352 / 1080)
    tiles = [w for w in wins if w.scale == 1.0]
    covered = np.zeros((1080, 1920), bool)
    for t in tiles:
        assert t.w <= 640 and t.h <= 352
        covered[t.y : t.y + t.h, t.x : t.x + t.w] = True
    assert covered.all()
    # any 48x48 face lies wholly inside some tile
    rng = np.random.default_rng(0)
    for x, y in rng.integers(0, [1920 - 48, 1080 - 48], size=(500, 2)):
        assert any(
            t.x <= x and x + 48 <= t.x + t.w and t.y <= y and y + 48 <= t.y + t.h for t in tiles
        )


def test_in_a_photo_a_small_candidate_opens_one_tile_and_that_tile_holds_the_whole_face() -> None:
    """Tile gating for single images: a face in an overlap used to open every tile it touched
    (up to four runs); one suffices, and it must hold the face whole (up to the overlap, 48
    model px = 32 photo px at 1.5x)."""
    wins = plan(1024, 768, 544, 416, ScheduleConfig(), still=True)
    tiles = [i for i, w in enumerate(wins) if not w.whole]
    assert len(tiles) == 9 and {wins[i].scale for i in tiles} == {1.5}
    face = 30
    rng = np.random.default_rng(1)
    xy = rng.integers(0, [1024 - face, 768 - face], size=(400, 2)).astype(np.float32)
    for x, y in xy:
        cx, cy = np.array([x + face / 2]), np.array([y + face / 2])
        (k,) = _gated(cx, cy, wins, tiles, one_each=True)
        t = wins[k]
        assert t.x <= x * 1.5 and (x + face) * 1.5 <= t.x + t.w
        assert t.y <= y * 1.5 and (y + face) * 1.5 <= t.y + t.h
        assert k in _gated(cx, cy, wins, tiles, one_each=False)
    cx, cy = xy[:, 0] + face / 2, xy[:, 1] + face / 2
    assert _gated(cx, cy, wins, tiles, one_each=True) == set(tiles)  # faces everywhere
    assert _gated(cx[:0], cy[:0], wins, tiles, one_each=True) == set()


def test_in_a_video_frame_a_candidate_opens_every_tile_holding_it() -> None:
    """Video frames keep every tile a candidate touches (tiles rotate over frames there)."""
    wins = plan(1920, 1080, 544, 416, ScheduleConfig())
    tiles = [i for i, w in enumerate(wins) if not w.whole]
    seam = wins[tiles[1]].x + 10.0  # inside the overlap of the first two tiles of the top row
    opened = _gated(np.array([seam]), np.array([20.0]), wins, tiles, one_each=False)
    assert opened == {tiles[0], tiles[1]}
    assert len(_gated(np.array([seam]), np.array([20.0]), wins, tiles, one_each=True)) == 1


def test_a_frame_smaller_than_the_model_gets_one_window() -> None:
    wins = plan(320, 240, 640, 352, ScheduleConfig(tile_scales=[1.0]))
    assert len(wins) == 1


def test_schedule_needs_a_pass() -> None:
    with pytest.raises(ValueError):
        ScheduleConfig(whole_frame=False, tile_scales=[])


def _manifest(tmp: Path, file: str, sha: str) -> Path:
    (tmp / "manifest.yaml").write_text(
        f"models:\n  centerface_640x352:\n    file: {file}\n    sha256: {sha}\n"
    )
    return tmp


def test_missing_model_file_is_a_model_error(tmp_path: Path) -> None:
    d = _manifest(tmp_path, "gone.tflite", "0" * 64)
    with pytest.raises(ModelError, match="missing"):
        verified_model("centerface_640x352", d)


def test_altered_model_is_refused_before_loading(tmp_path: Path) -> None:
    (tmp_path / "m.tflite").write_bytes(b"not the model")
    d = _manifest(tmp_path, "m.tflite", "ab" * 32)
    with pytest.raises(ModelError, match="does not match"):
        verified_model("centerface_640x352", d)


def test_models_dir_without_manifest_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=str(tmp_path)):
        find_models_dir(tmp_path)


def test_corrupt_model_with_matching_hash_fails_to_load_clearly(tmp_path: Path) -> None:
    import hashlib

    from daemon.detect import build_detector

    data = b"\x00" * 1000
    (tmp_path / "m.tflite").write_bytes(data)
    _manifest(tmp_path, "m.tflite", hashlib.sha256(data).hexdigest())
    with pytest.raises(ModelError, match="cannot load"):
        build_detector(DetectConfig(models_dir=tmp_path))


def test_env_var_points_at_the_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _manifest(tmp_path, "x.tflite", "0" * 64)
    monkeypatch.setenv("VEILCAM_MODELS", str(tmp_path))
    assert find_models_dir() == tmp_path


def test_documented_config_matches_the_detect_and_mask_defaults(repo_dir: Path) -> None:
    """config.yaml documents the defaults the README's figures were measured with."""
    from daemon.config import load
    from daemon.mask.config import MaskConfig

    cfg = load(repo_dir / "config.yaml")
    assert cfg.detect == DetectConfig()
    assert cfg.mask == MaskConfig()


def test_centerface_runs_at_the_configured_input_size_and_refuses_odd_sizes() -> None:
    """CenterFace is fully convolutional: the converted 640x352 model is resized at load."""
    from daemon.detect import build_detector
    from daemon.detect.config import CenterFaceConfig

    assert build_detector(DetectConfig()).input_size == (544, 416)
    native = DetectConfig.model_validate({"centerface": {"input_size": None}})
    assert build_detector(native).input_size == (640, 352)
    for bad in ([540, 416], [544, 100], [4096, 416]):
        with pytest.raises(ValueError, match="multiples of 32"):
            CenterFaceConfig.model_validate({"input_size": bad})
