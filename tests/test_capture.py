"""Capture sources against real files, a real RTSP server, an HTTP stream and a fake picamera2."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from daemon.capture import sources
from daemon.capture.config import CameraConfig
from daemon.capture.runner import CaptureRunner
from daemon.capture.sources import (
    FileSource,
    NetworkSource,
    NoCameraError,
    Picamera2Source,
    make_source,
)
from daemon.frames import Frame
from tests._live import free_port, wait_for

REPO = Path(__file__).resolve().parent.parent


class Collector:
    def __init__(self, limit: int | None = None) -> None:
        self.frames: list[tuple[int, float, tuple[int, ...]]] = []
        self.limit = limit
        self.enough = threading.Event()

    def __call__(self, f: Frame) -> bool:
        self.frames.append((f.index, f.pts, f.image.shape))
        if self.limit and len(self.frames) >= self.limit:
            self.enough.set()
        return True


def clip(data_dir: Path) -> Path:
    return data_dir / "videos" / "intel_asl_gestures" / "again.mkv"  # 77 frames, 30 fps


def run_capture(src, cfg: CameraConfig, limit: int | None = None, timeout: float = 30):
    col = Collector(limit)
    runner = CaptureRunner(src, cfg, col)
    runner.start()
    if limit:
        assert col.enough.wait(timeout), f"only {len(col.frames)} frames"
        runner.stop()
    runner.join(timeout)
    assert runner.ended.is_set()
    return runner, col


def test_file_once_as_fast_as_possible(data_dir: Path) -> None:
    cfg = CameraConfig(loop=False, realtime=False)
    runner, col = run_capture(FileSource(str(clip(data_dir)), loop=False, realtime=False), cfg)
    assert [i for i, _, _ in col.frames] == list(range(77))
    assert col.frames[0][2] == (480, 640, 3)
    pts = [p for _, p, _ in col.frames]
    assert pts[0] == 0.0 and all(b > a for a, b in itertools.pairwise(pts))
    assert runner.state == "ended" and runner.error is None


def test_file_loop_keeps_time_increasing(data_dir: Path) -> None:
    cfg = CameraConfig(loop=True, realtime=False)
    _, col = run_capture(FileSource(str(clip(data_dir)), loop=True, realtime=False), cfg, 170)
    pts = [p for _, p, _ in col.frames]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert pts[100] > 77 / 30.0  # the second pass continues the clock


def test_file_plays_at_its_own_rate(data_dir: Path) -> None:
    src = FileSource(str(clip(data_dir)), loop=False, realtime=True)
    src.open()
    t0 = time.monotonic()
    for _ in range(16):
        assert src.read() is not None
    src.close()
    assert time.monotonic() - t0 >= 15 / 30.0 - 0.01  # paced, not as fast as decoding goes


def test_missing_file_ends_with_a_clear_error(tmp_path: Path) -> None:
    runner, col = run_capture(
        FileSource(str(tmp_path / "nope.mp4"), loop=True, realtime=True), CameraConfig()
    )
    assert col.frames == []
    assert runner.error is not None and "no such file" in runner.error


def start_rtsp(port: int, what: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["/usr/bin/python3", str(REPO / "tests" / "rtsp_server.py"), str(port), what],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "READY", line
    return proc


def test_rtsp_over_tcp(data_dir: Path) -> None:
    port = free_port()
    server = start_rtsp(port, str(clip(data_dir)))
    try:
        cfg = CameraConfig(open_timeout_s=5)
        src = make_source(cfg, f"rtsp://127.0.0.1:{port}/cam")
        assert isinstance(src, NetworkSource) and src.live
        _runner, col = run_capture(src, cfg, limit=30)
        assert all(shape == (480, 640, 3) for _, _, shape in col.frames)
        assert [i for i, _, _ in col.frames[:30]] == list(range(30))
    finally:
        server.terminate()
        server.wait(10)


def test_lost_rtsp_camera_is_retried_and_comes_back() -> None:
    port = free_port()
    server = start_rtsp(port, "testsrc")
    cfg = CameraConfig(open_timeout_s=2, retry_initial_s=0.2, retry_max_s=1.0)
    col = Collector()
    states: list[str] = []
    runner = CaptureRunner(
        NetworkSource(f"rtsp://127.0.0.1:{port}/cam", timeout_s=2), cfg, col,
        on_progress=lambda: states.append(runner.state),
    )  # fmt: skip
    runner.start()
    try:
        wait_for(lambda: len(col.frames) >= 10, 20, "first frames")
        server.send_signal(signal.SIGKILL)  # the camera dies without a goodbye
        server.wait(10)
        wait_for(lambda: runner.state in ("lost", "retrying"), 20, "source lost")
        n_lost = len(col.frames)
        server = start_rtsp(port, "testsrc")
        wait_for(lambda: len(col.frames) >= n_lost + 10, 30, "frames after reconnect")
        assert runner.state == "ok"
        assert {"lost", "retrying"} & set(states)  # the retry loop reported progress (watchdog)
        assert runner.error is None and not runner.ended.is_set()
    finally:
        runner.stop()
        runner.join(10)
        server.kill()
        server.wait(10)


def test_http_mpegts_stream(data_dir: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/x.ts"
    ff = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-i", str(clip(data_dir)), "-c", "copy",
         "-f", "mpegts", "-listen", "1", url],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        cfg = CameraConfig(open_timeout_s=5, retry_initial_s=0.2)
        _, col = run_capture(make_source(cfg, url), cfg, limit=20)
        assert all(shape == (480, 640, 3) for _, _, shape in col.frames)
    finally:
        ff.kill()
        ff.wait(10)


FAKE_PICAMERA2 = """
import numpy as np

calls = []

class Picamera2:
    cameras = [{"Model": "imx708", "Num": 0}]

    @staticmethod
    def global_camera_info():
        return list(Picamera2.cameras)

    def __init__(self):
        calls.append("init")
        self.n = 0

    def create_video_configuration(self, main, controls=None):
        calls.append(("config", main["size"], main["format"]))
        self.size = main["size"]
        return {"main": main}

    def configure(self, conf):
        calls.append("configure")

    def start(self):
        calls.append("start")

    def capture_array(self, name="main"):
        self.n += 1
        w, h = self.size
        img = np.zeros((h, w, 4), np.uint8)
        img[..., 0] = 255  # blue in BGR order, plus a padding channel
        img[0, 0, 1] = self.n % 256
        return img

    def stop(self):
        calls.append("stop")

    def close(self):
        calls.append("close")
"""


@pytest.fixture
def fake_picamera2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fake ``picamera2`` package at the hardware boundary, importable like the real one."""
    pkg = tmp_path / "fakecam" / "picamera2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(FAKE_PICAMERA2)
    monkeypatch.syspath_prepend(str(pkg.parent))
    sys.modules.pop("picamera2", None)
    import picamera2

    yield picamera2
    sys.modules.pop("picamera2", None)


def test_picamera2_source(fake_picamera2) -> None:
    cfg = CameraConfig(source="picamera2", width=320, height=240, realtime=False)
    src = make_source(cfg)
    assert isinstance(src, Picamera2Source)
    _runner, col = run_capture(src, cfg, limit=5)
    assert all(shape == (240, 320, 3) for _, _, shape in col.frames)
    calls = fake_picamera2.calls
    assert calls[:4] == ["init", ("config", (320, 240), "RGB888"), "configure", "start"]
    assert calls[-2:] == ["stop", "close"]


def test_auto_prefers_picamera2_then_v4l2_then_fails_clearly(
    fake_picamera2, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sources.resolve_auto() == "picamera2"
    fake_picamera2.Picamera2.cameras = []  # picamera2 installed, no camera attached
    monkeypatch.setattr(sources, "v4l2_devices", lambda: [])
    with pytest.raises(NoCameraError, match="no camera found"):
        sources.resolve_auto()


def test_make_source_kinds(tmp_path: Path) -> None:
    cfg = CameraConfig()
    assert isinstance(make_source(cfg, "rtsp://10.0.0.2/stream"), NetworkSource)
    assert isinstance(make_source(cfg, "https://cam.local/x.m3u8"), NetworkSource)
    assert isinstance(make_source(cfg, "/dev/video0"), sources.V4L2Source)
    f = make_source(cfg, str(tmp_path / "a.mp4"))
    assert isinstance(f, FileSource) and not f.live
