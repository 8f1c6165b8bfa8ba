"""``veilcam run`` as a process: real detector, real files, signals, kill -9, bad configs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._live import probe, segments, wait_for

REPO = Path(__file__).resolve().parent.parent
VEILCAM = [sys.executable, "-m", "daemon"]


def write_config(path: Path, rec: Path, extra: str = "", *, camera: str = "") -> Path:
    path.write_text(
        "camera:\n  name: testcam\n"
        + camera
        + f"recording:\n  path: {rec}\n  segment_s: 2\n  keyframe_s: 0.5\n  min_free_percent: 0\n"
        + "mqtt:\n  enabled: false\n"
        + extra
    )
    return path


def start(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.Popen(
        [*VEILCAM, "run", *args],
        cwd=REPO,
        env=kw.pop("env", env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def finish(p: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    _, err = p.communicate(timeout=timeout)
    return p.returncode, err


def test_fast_file_run_writes_every_frame_and_its_regions(tmp_path: Path, data_dir: Path) -> None:
    clip = data_dir / "videos" / "intel_asl_gestures" / "again.mkv"  # 77 frames, one person
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "rec")
    regions = tmp_path / "regions.jsonl"
    code, err = finish(
        start(["--config", str(cfg), "--source", str(clip), "--fast", "--regions", str(regions)])
    )
    assert code == 0, err
    lines = [json.loads(x) for x in regions.read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(77))  # index in recording == in source
    faces = [x for x in lines if any(r["label"] == "face" for r in x["regions"])]
    assert len(faces) >= 70, len(faces)  # the signer's face is masked throughout
    r = faces[0]["regions"][0]
    assert set(r) >= {"box", "label", "shape"} and len(r["box"]) == 4
    files = segments(tmp_path / "rec" / "testcam")
    assert sum(probe(f)[0] for f in files) == 77
    assert all(probe(f)[1] == "" for f in files)


def test_bad_config_is_rejected_with_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("camera:\n  name: cam\nrecording:\n  segment_s: 1\n  colour: red\n")
    code, err = finish(start(["--config", str(cfg), "--for", "1"]))
    assert code == 2
    assert f"{cfg}:4: recording.segment_s:" in err
    assert f"{cfg}:5: recording.colour: unknown key" in err


def test_missing_model_records_nothing_and_fails(tmp_path: Path, data_dir: Path) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "rec", f"detect:\n  models_dir: {empty}\n")
    clip = data_dir / "videos" / "intel_asl_gestures" / "again.mkv"
    code, err = finish(start(["--config", str(cfg), "--source", str(clip), "--fast"]))
    assert code == 3, err
    assert "manifest" in err and "recording nothing" in err
    assert segments(tmp_path / "rec") == []


LOOP = "  loop: true\n  realtime: true\n"


def test_kill_9_leaves_every_file_playable(tmp_path: Path, data_dir: Path) -> None:
    clip = data_dir / "videos" / "intel_asl_gestures" / "again.mkv"
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "rec", camera=LOOP)
    p = start(["--config", str(cfg), "--source", str(clip)])
    try:
        # wait for a finished segment and a current one that already holds a fragment
        def two_segments() -> bool:
            files = segments(tmp_path / "rec")
            return len(files) >= 2 and files[-1].stat().st_size > 20_000

        wait_for(two_segments, 60, "two segments")
    finally:
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=30)
    files = segments(tmp_path / "rec")
    assert len(files) >= 2
    for f in files:
        n, err = probe(f)
        assert err == "", (f.name, err)
        assert n > 0, f.name


def test_sigterm_finishes_the_segment_cleanly(tmp_path: Path, data_dir: Path) -> None:
    clip = data_dir / "videos" / "intel_asl_gestures" / "again.mkv"
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "rec", camera=LOOP)
    p = start(["--config", str(cfg), "--source", str(clip)])
    wait_for(lambda: segments(tmp_path / "rec"), 60, "a segment")
    p.send_signal(signal.SIGTERM)
    code, err = finish(p, 60)
    assert code == 0, err
    last = segments(tmp_path / "rec")[-1]
    assert last.read_bytes()[-16:].find(b"mfro") >= 0  # the fragment index trailer was written
    assert probe(last)[1] == ""


def test_sighup_with_bad_config_keeps_running_then_good_config_applies(
    tmp_path: Path, data_dir: Path
) -> None:
    clip = data_dir / "videos" / "intel_asl_gestures" / "again.mkv"
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "rec", camera=LOOP)
    good = cfg.read_text()
    p = start(["--config", str(cfg), "--source", str(clip)])
    try:
        wait_for(lambda: segments(tmp_path / "rec"), 60, "a segment")
        cfg.write_text(good + "gate:\n  deadline_ms: -5\n")
        p.send_signal(signal.SIGHUP)
        n_before = len(segments(tmp_path / "rec"))
        # still recording: new segments keep coming (2 s each)
        wait_for(lambda: len(segments(tmp_path / "rec")) >= n_before + 2, 60, "more segments")
        assert p.poll() is None
        cfg.write_text(good.replace("segment_s: 2", "segment_s: 3"))
        p.send_signal(signal.SIGHUP)
        n_before = len(segments(tmp_path / "rec"))
        wait_for(
            lambda: len(segments(tmp_path / "rec")) >= n_before + 1, 60, "segments after reload"
        )
        assert p.poll() is None
    finally:
        p.send_signal(signal.SIGTERM)
        code, err = finish(p, 60)
    assert code == 0, err
    assert f"{cfg}:13: gate.deadline_ms:" in err  # reported with file, line and field
    assert "config rejected" in err and "config reloaded" in err
    for f in segments(tmp_path / "rec"):
        assert probe(f)[1] == "", f.name


def test_for_stops_cleanly(tmp_path: Path, data_dir: Path) -> None:
    clip = data_dir / "videos" / "intel_asl_gestures" / "again.mkv"
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "rec", camera=LOOP)
    t0 = time.monotonic()
    code, err = finish(start(["--config", str(cfg), "--source", str(clip), "--for", "3"]))
    assert code == 0, err
    assert time.monotonic() - t0 < 60
    files = segments(tmp_path / "rec")
    assert files and all(probe(f)[1] == "" for f in files)
    assert sum(probe(f)[0] for f in files) >= 30  # about 3 s of a 30 fps clip


@pytest.mark.parametrize("missing", ["nope.mp4"])
def test_unopenable_file_source_fails_clearly(tmp_path: Path, missing: str) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "rec")
    code, err = finish(start(["--config", str(cfg), "--source", str(tmp_path / missing)]))
    assert code == 1
    assert "no such file" in err


def test_auto_without_a_camera_says_so(tmp_path: Path) -> None:
    import glob

    if glob.glob("/dev/video*"):
        pytest.skip("this machine has a V4L2 device; auto would use it")
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "rec")
    code, err = finish(start(["--config", str(cfg), "--source", "auto"]))
    assert code == 1
    assert "no camera found" in err


def test_rtsp_camera_is_recorded(tmp_path: Path) -> None:
    from tests._live import free_port

    port = free_port()
    server = subprocess.Popen(
        ["/usr/bin/python3", str(REPO / "tests" / "rtsp_server.py"), str(port), "testsrc"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "READY"
        cfg = write_config(tmp_path / "c.yaml", tmp_path / "rec", camera="  open_timeout_s: 5\n")
        code, err = finish(
            start(["--config", str(cfg), "--source", f"rtsp://127.0.0.1:{port}/cam", "--for", "5"])
        )
    finally:
        server.terminate()
        server.wait(10)
    assert code == 0, err
    files = segments(tmp_path / "rec")
    assert files and all(probe(f)[1] == "" for f in files)
    assert sum(probe(f)[0] for f in files) >= 25  # seconds of a 25 fps camera, minus start-up
