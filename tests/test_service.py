"""systemd integration: READY, STATUS and WATCHDOG on a NOTIFY_SOCKET the test listens on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests._live import free_port, segments, wait_for

REPO = Path(__file__).resolve().parent.parent


class NotifySocket:
    """An AF_UNIX datagram socket collecting sd_notify messages with their arrival time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            now = time.monotonic()  # one time per datagram: its lines arrived together
            for line in data.decode().splitlines():
                self.messages.append((now, line))

    def times(self, prefix: str) -> list[float]:
        return [t for t, m in list(self.messages) if m.startswith(prefix)]

    def close(self) -> None:
        self._stop.set()
        self._t.join(2)
        self.sock.close()


def run_daemon(
    tmp_path: Path, source: str, notify: Path, camera: str = "", env: dict[str, str] | None = None
) -> subprocess.Popen:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"camera:\n  name: svc\n{camera}"
        f"recording:\n  path: {tmp_path / 'rec'}\n  min_free_percent: 0\n"
        "mqtt:\n  enabled: false\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if k != "VEILCAM_CAMERA_WAIT_S"},
        "NOTIFY_SOCKET": str(notify),
        "WATCHDOG_USEC": "1000000",  # 1 s: pings every 0.25 s while healthy
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    env.pop("WATCHDOG_PID", None)
    return subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "--config", str(cfg), "--source", source],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_watchdog_pings_follow_frames_and_stop_when_the_pipeline_stalls(
    tmp_path: Path, data_dir: Path
) -> None:
    """A FIFO source: frames flow while the test writes, then the source hangs (no EOF)."""
    ts = tmp_path / "clip.ts"
    clip = data_dir / "videos" / "intel_asl_gestures" / "again.mkv"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-stream_loop", "2", "-i", str(clip), "-c", "copy",
         "-f", "mpegts", str(ts)],
        check=True, timeout=60,
    )  # fmt: skip
    fifo = tmp_path / "cam.fifo"
    os.mkfifo(fifo)
    ns = NotifySocket(tmp_path / "notify.sock")
    p = run_daemon(tmp_path, str(fifo), ns.path, camera="  loop: false\n  realtime: true\n")
    w = open(fifo, "wb")  # noqa: SIM115 - kept open on purpose: a hung camera sends no EOF
    try:
        w.write(ts.read_bytes())  # ~7.7 s of video at 30 fps, played in real time
        w.flush()
        wait_for(lambda: ns.times("READY=1"), 60, "READY=1")
        wait_for(lambda: len(ns.times("WATCHDOG=1")) >= 8, 60, "watchdog pings")
        wait_for(lambda: ns.times("STATUS="), 30, "STATUS=")
        status = [m for _, m in ns.messages if m.startswith("STATUS=")][-1]
        assert "fps" in status and "faces" in status
        # the data runs out; the FIFO stays open, so the source hangs like a dead camera
        wait_for(
            lambda: ns.times("WATCHDOG=1") and time.monotonic() - ns.times("WATCHDOG=1")[-1] > 3.0,
            60,
            "pings to stop",
            step=0.2,
        )
        assert p.poll() is None  # the process is alive, only the pipeline stalled
        silence_from = ns.times("WATCHDOG=1")[-1]
        time.sleep(1.0)  # observe: still no ping (absence cannot be waited for)
        assert ns.times("WATCHDOG=1")[-1] == silence_from
    finally:
        w.close()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
        ns.close()
    assert p.returncode == 0, err
    assert ns.times("STOPPING=1")


def test_camera_down_at_boot_becomes_ready_with_a_reason_and_keeps_the_watchdog_fed(
    tmp_path: Path,
) -> None:
    """A camera that is down at boot: READY after the bound, STATUS says why, pings go on.

    Without READY systemd (Type=notify, TimeoutStartSec) would kill and restart a healthy
    daemon in a loop; with it the unit is active and the retry loop's pings guard it.
    """
    ns = NotifySocket(tmp_path / "notify.sock")
    port = free_port()  # nothing listens there
    wait_s = 3.0
    started = time.monotonic()
    p = run_daemon(
        tmp_path,
        f"rtsp://admin:s3cret@127.0.0.1:{port}/cam",
        ns.path,
        camera="  open_timeout_s: 1\n  retry_initial_s: 0.2\n  retry_max_s: 1\n",
        env={"VEILCAM_CAMERA_WAIT_S": str(wait_s)},
    )
    try:
        ready = wait_for(lambda: ns.times("READY=1"), 60, "READY=1 while the camera is down")
        assert isinstance(ready, list)
        # not at once: the daemon first gives the camera the bound to answer
        assert ready[0] - started >= wait_s
        # the same datagram carries the reason, so `systemctl status` shows it with "active"
        reason = [m for t, m in ns.messages if t == ready[0] and m.startswith("STATUS=")]
        assert reason, ns.messages
        assert "waiting for camera" in reason[0] and "Connection refused" in reason[0]
        # still alive and retrying: the watchdog keeps being fed after READY
        wait_for(
            lambda: len([t for t in ns.times("WATCHDOG=1") if t > ready[0]]) >= 4,
            30,
            "pings after READY while retrying",
        )
        later = wait_for(
            lambda: [m for t, m in list(ns.messages) if t > ready[0] and m.startswith("STATUS=")],
            30,
            "a later status",
        )
        assert isinstance(later, list)
        assert "waiting for camera, source" in later[-1] and "Connection refused" in later[-1]
        assert p.poll() is None
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
        ns.close()
    assert p.returncode == 0, err
    assert len(ns.times("READY=1")) == 1  # one READY; STOPPING follows
    assert ns.times("STOPPING=1")
    # STATUS is world-readable and logs reach more people than the config: the camera's
    # password appears in neither
    assert not [m for _, m in ns.messages if "s3cret" in m]
    assert "127.0.0.1" in err and "s3cret" not in err, err
    assert not segments(tmp_path / "rec"), "nothing can have been recorded without a camera"
