"""The running daemon on a disk that fills up mid-segment: a real 4 MiB tmpfs.

What the service promises (daemon/record/recorder.py): a full disk never stops it; the segment
being written is cut back to its last complete fragment and stays playable; the problem is
logged and shown in STATUS; frames are dropped and counted meanwhile; a new segment is tried
after a pause, so recording resumes by itself once there is room again.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._live import probe, segments, wait_for
from tests.test_service import NotifySocket

REPO = Path(__file__).resolve().parent.parent
DISK_BYTES = 4 * 1024 * 1024
ROOM_BYTES = 1200 * 1024  # left free for the recording: ~3 s of the clip at crf 5


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB file system, so writes really fail with ENOSPC (as tests/test_record.py)."""
    if os.geteuid() != 0:
        pytest.fail("this test mounts a 4 MiB tmpfs and needs root (CI runs as root)")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mnt)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if r.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the full-disk test: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


class Lines:
    """The daemon's stderr log, collected line by line as it comes."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._t.start()

    def _run(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line.rstrip("\n"))

    def having(self, text: str) -> list[str]:
        return [line for line in list(self.lines) if text in line]

    def join(self) -> None:
        self._t.join(10)


def test_daemon_survives_a_full_disk_keeps_files_playable_and_resumes(
    tmp_path: Path, small_disk: Path, data_dir: Path
) -> None:
    rec = small_disk / "rec"
    ballast = small_disk / "other-data.bin"  # something else filled the disk
    with open(ballast, "wb") as f:
        f.write(os.urandom(os.statvfs(small_disk).f_bavail * 4096 - ROOM_BYTES))
    clip = data_dir / "videos" / "intel_one-by-one-person-detection.mp4"  # 768x432, 10 fps
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "camera:\n  name: disk\n  loop: true\n  realtime: true\n"
        f"recording:\n  path: {rec}\n  state_file: {tmp_path / 'state.json'}\n"
        "  segment_s: 60\n  keyframe_s: 0.5\n  crf: 5\n  min_free_percent: 0\n"
        "mqtt:\n  enabled: false\n"
    )
    ns = NotifySocket(tmp_path / "notify.sock")
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "WATCHDOG_PID")}
    env.update(NOTIFY_SOCKET=str(ns.path), PYTHONUNBUFFERED="1")
    p = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "--config", str(cfg), "--source", str(clip),
         "--for", "120"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    log = Lines(p.stderr)
    try:
        wait_for(lambda: log.having("disk full"), 90, "the disk-full error in the log")
        assert p.poll() is None, "the daemon died on a full disk"
        # the segment that hit the full disk mid-way was cut back to its last fragment: it plays
        (first,) = segments(rec)
        n_first, err = probe(first)
        assert err == "" and n_first > 0, (first.name, n_first, err)
        ballast.unlink()  # room again, before the retry 5 s on: it starts a new segment
        wait_for(lambda: log.having("recording resumed"), 60, "recording to resume")
        wait_for(
            lambda: [s for s in segments(rec) if s != first and s.stat().st_size > 100_000],
            60,
            "frames in a new segment",
        )
        assert first.exists(), "the cut recording was deleted although there was room"
        assert p.poll() is None
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        log.join()
        ns.close()
    assert p.returncode == 0, "\n".join(log.lines[-30:])
    # while it was full, `systemctl status` said so (the recorder's error, every stats period)
    assert [m for _, m in ns.messages if m.startswith("STATUS=") and "disk full" in m]
    stopped = log.having("daemon.service.daemon: stopped frames=")
    dropped = re.search(r" dropped=(\d+)", stopped[-1]) if stopped else None
    assert dropped and int(dropped.group(1)) > 0, stopped  # frames lost to the full disk, counted
    files = segments(rec)
    assert len(files) >= 2 and first in files
    for f in files:  # everything left on the disk plays to its end
        n, err = probe(f)
        assert err == "" and n > 0, (f.name, n, err)
    assert probe(first)[0] == n_first  # untouched since it was cut back
