"""bench/pi_model.py's arithmetic: the CI verdict and the ms/fps projection (no emulator)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("pi_model", REPO / "bench" / "pi_model.py")
assert spec is not None and spec.loader is not None
pi_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pi_model)


def test_ci_fails_only_above_ten_percent_over_the_baseline() -> None:
    assert pi_model.within_baseline(109.9e6, 100e6)
    assert pi_model.within_baseline(50e6, 100e6)  # fewer instructions: always fine
    assert not pi_model.within_baseline(110.1e6, 100e6)


def test_projection_turns_instructions_into_ms_and_fps() -> None:
    # 2.4 G instructions per frame at IPC 2 and 2.4 GHz: 0.5 s of one core
    p = pi_model.project({"detect": 2.4e9, "encode": 2.4e9}, ipc=2.0, ghz=2.4)
    assert p["detect"] == pytest.approx(500.0)
    assert p["total"] == pytest.approx(1000.0)
    assert p["fps4"] == pytest.approx(4 * pi_model.EFFICIENCY)


def test_baseline_is_committed_and_plausible() -> None:
    base = json.loads(pi_model.BASELINE.read_text())
    assert base["input"] == [544, 416]
    assert 1e8 < base["centerface_run_a76"] < 1e9


def test_another_clip_is_merged_as_a_scene_of_its_own() -> None:
    crowd = {"counts": {"a76": {"720": {"decode": {"insn": 24e6}}}}, "elapsed_s": 10}
    one = {
        "clip": "intel_one-by-one-person-detection.mp4",
        "span_s": [23.0, 43.0],
        "frames": {"720": {"frames": 200, "detector_frames": [0, 66, 133, 199]}},
        "counts": {"a76": {"720": {"decode": {"insn": 17e6}}}},
        "elapsed_s": 20,
    }
    m = pi_model.merge([crowd, one])
    assert m["counts"]["a76"]["720"]["decode"]["insn"] == 24e6  # the crowd's, not overwritten
    scene = m["scenes"]["intel_one-by-one-person-detection"]
    assert scene["counts"]["a76"]["720"]["decode"]["insn"] == 17e6
    assert scene["span_s"] == [23.0, 43.0]
    assert "23-43 s" in pi_model.scene_label(scene)
    # the scene's own tables: its counts as the main ones
    assert pi_model.merge([scene], scenes=False)["counts"]["a76"]["720"]["decode"]["insn"] == 17e6


def test_clip_names_resolve_under_the_data_sets_videos() -> None:
    assert pi_model.clip_path(pi_model.CLIP.name) == pi_model.CLIP
    assert pi_model.clip_path("/abs/x.mp4") == Path("/abs/x.mp4")


def test_committed_counts_report_every_scene(capsys: pytest.CaptureFixture[str]) -> None:
    saved = pi_model.merge([json.loads((REPO / "bench" / "pi_model_counts.json").read_text())])
    for name, scene in saved["scenes"].items():
        part = pi_model.merge([scene], scenes=False)
        sizes = sorted({r for by_res in part["counts"].values() for r in by_res}, key=int)
        pi_model.report(part, list(part["counts"]), sizes, f"{name} ")
    out = capsys.readouterr().out
    for name in saved["scenes"]:
        assert f"| {name} 720p |" in out
