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
