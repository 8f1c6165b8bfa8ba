"""SIGHUP on a running daemon: whatever is wrong with the new config, the running one stays.

Rejected at load (duplicate keys, a value out of range) or failing when it is applied (a
recording directory that cannot be made), the daemon keeps recording where it was. Before,
a failed apply stopped the output thread and the daemon with it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests._live import probe, segments, wait_for

REPO = Path(__file__).resolve().parent.parent
CLIP = ("videos", "intel_asl_gestures", "again.mkv")


def base(rec: Path) -> str:
    return (
        "camera:\n  name: hup\n  loop: true\n  realtime: true\n"
        f"recording:\n  path: {rec}\n  segment_s: 2\n  keyframe_s: 0.5\n  min_free_percent: 0\n"
        "mqtt:\n  enabled: false\n"
    )


def test_a_reload_that_cannot_load_or_apply_keeps_the_running_config(
    tmp_path: Path, data_dir: Path
) -> None:
    rec = tmp_path / "rec"
    cfg = tmp_path / "c.yaml"
    good = base(rec)
    cfg.write_text(good)
    log = tmp_path / "daemon.log"
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the new recording directory would go\n")
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    with log.open("w") as err:
        p = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run", "--config", str(cfg),
             "--source", str(data_dir.joinpath(*CLIP))],
            cwd=REPO, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip

    def reload(text: str, expect: str) -> None:
        seen = log.read_text().count(expect)
        cfg.write_text(text)
        p.send_signal(signal.SIGHUP)
        wait_for(lambda: log.read_text().count(expect) > seen, 60, expect)
        n = len(segments(rec))  # still recording where it was: two more 2 s segments
        wait_for(lambda: len(segments(rec)) >= n + 2 or p.poll() is not None, 60, "segments")
        assert p.poll() is None, log.read_text()

    try:
        wait_for(lambda: segments(rec), 60, "a first segment")
        # duplicate keys: the second `mask:` would have dropped the first one's zone
        reload(
            good + "mask:\n  zones:\n    - points: [[0, 0], [50, 0], [50, 50]]\n"
            "mask:\n  style: mosaic\n",
            "config rejected",
        )
        reload(good + "mask:\n  color: [300, -5, 0]\n", "config rejected")
        # valid, but the new recording directory cannot be made: apply fails, old one stays
        reload(good.replace(str(rec), str(blocker / "rec")), "config not applied")
        # a new camera name restarts the pipeline; its directory cannot be made either
        (rec / "hup2").write_text("in the way\n")
        reload(good.replace("name: hup", "name: hup2"), "new pipeline did not start")
    finally:
        p.send_signal(signal.SIGTERM)
        code = p.wait(60)
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text
    assert f"{cfg}:15: mask: duplicate key (first at line 12)" in text
    assert f"{cfg}:13: mask.color.0:" in text
    assert "config not applied, keeping the running one error=[Errno 20] Not a directory" in text
    assert "config reloaded" not in text
    files = segments(rec)
    assert len(files) >= 9
    assert all(probe(f)[1] == "" for f in files)


def test_a_failure_on_the_first_frame_is_not_blamed_on_the_detector(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """An OverflowError in the masker used to be logged as "nothing is recorded without a
    working detector" (and ``fatal`` said so); now the log names the stage and the error."""
    from daemon.config import parse
    from daemon.mask.masker import Masker
    from daemon.service.daemon import EXIT_RUNTIME, Service

    real = Masker.mask

    def mask(self: Masker, frame, regions):  # type: ignore[no-untyped-def]
        if frame.width > 64:  # the real frames, not a reload's test frame
            raise OverflowError("Python int too large to convert to C int")
        return real(self, frame, regions)

    monkeypatch.setattr(Masker, "mask", mask)
    cfg = parse(base(tmp_path / "rec").replace("loop: true", "loop: false"))
    service = Service(cfg, source=str(data_dir.joinpath(*CLIP)), fast=True)
    with caplog.at_level(logging.INFO):
        code = service.run(60)
    assert code == EXIT_RUNTIME
    assert "detector" not in (service.pipeline.fatal or "")
    assert "OverflowError" in (service.pipeline.fatal or "")
    critical = [r.getMessage() for r in caplog.records if r.levelno >= logging.CRITICAL]
    assert critical and not any("detector" in m for m in critical), critical
