"""Fail-closed gate decisions: wait, mask, or obscure; and the config it reads."""

from __future__ import annotations

import pytest

from daemon.config import ConfigError, parse
from daemon.gate import DetectionResult, Gate, GateConfig
from daemon.regions import Detection

CFG = GateConfig(deadline_ms=200.0)


def ok(index: int, pts: float, done: float) -> DetectionResult:
    return DetectionResult(index, pts, done, [Detection((0, 0, 10, 10), 0.9)])


def test_frame_waits_until_a_detection_at_or_after_it() -> None:
    g = Gate(CFG)
    g.add(ok(3, 0.12, done=10.05))
    d = g.decide(5, 0.20, captured=10.0, now=10.06)
    assert d.verdict == "wait" and d.wait_s == pytest.approx(0.14)
    g.add(ok(6, 0.24, done=10.10))
    assert g.decide(5, 0.20, captured=10.0, now=10.10).verdict == "mask"
    # the earlier frame is covered by the first result at or after it
    assert g.covering(4) is not None and g.covering(4).index == 6


def test_no_detection_by_the_deadline_obscures() -> None:
    g = Gate(CFG)
    d = g.decide(0, 0.0, captured=10.0, now=10.2)
    assert (d.verdict, d.reason) == ("obscure", "detection-missing")


def test_failed_detection_covers_nothing() -> None:
    g = Gate(CFG)
    g.add(DetectionResult(2, 0.08, 10.05, None, error="boom"))
    assert g.decide(1, 0.04, captured=10.0, now=10.1).verdict == "wait"
    d = g.decide(1, 0.04, captured=10.0, now=10.3)
    assert (d.verdict, d.reason) == ("obscure", "detection-failed")


def test_result_ready_after_the_deadline_is_late() -> None:
    g = Gate(CFG)
    g.add(ok(1, 0.04, done=10.25))
    d = g.decide(1, 0.04, captured=10.0, now=10.25)
    assert (d.verdict, d.reason) == ("obscure", "detection-late")


def test_result_too_far_ahead_in_the_video_is_late() -> None:
    g = Gate(CFG)
    g.add(ok(20, 0.80, done=10.01))
    d = g.decide(1, 0.04, captured=10.0, now=10.01)
    assert (d.verdict, d.reason) == ("obscure", "detection-late")


def test_forget_keeps_what_later_frames_need() -> None:
    g = Gate(CFG)
    for i in (2, 4, 6):
        g.add(ok(i, i * 0.04, done=10.0))
    g.forget_before(4)
    assert g.covering(3) is not None and g.covering(3).index == 4
    assert g.decide(5, 0.2, captured=10.0, now=10.0).verdict == "mask"


def test_gate_config_rejects_unknown_key_with_line() -> None:
    text = "gate:\n  on_missing: obscure\n  deadline: 5\n"
    with pytest.raises(ConfigError) as err:
        parse(text, "x.yaml")
    assert err.value.problems == ["x.yaml:3: gate.deadline: unknown key"]
    with pytest.raises(ConfigError) as err:
        parse("gate:\n  on_missing: blur\n", "x.yaml")
    assert err.value.problems[0].startswith("x.yaml:2: gate.on_missing:")


def test_fast_file_mode_ignores_wall_clock_but_not_video_time() -> None:
    g = Gate(CFG, wall_clock=False)
    g.add(ok(1, 0.04, done=99.0))  # ready long after capture: fine for a file played fast
    assert g.decide(1, 0.04, captured=10.0, now=99.0).verdict == "mask"
    # no result at or after frame 2 yet, and the detector is not past its deadline: wait
    assert g.decide(2, 0.08, captured=10.0, now=99.0).verdict == "wait"
    g.add(DetectionResult(9, 0.36, 99.1, None, error="boom"))  # failures up to 0.36 s
    assert g.decide(2, 0.08, captured=10.0, now=99.1).verdict == "obscure"  # 0.28 s > 0.2 s
    assert g.decide(5, 0.20, captured=10.0, now=99.1).verdict == "wait"
    d = g.decide(5, 0.20, captured=10.0, now=99.1, final=True)  # the file ended
    assert (d.verdict, d.reason) == ("obscure", "detection-failed")
