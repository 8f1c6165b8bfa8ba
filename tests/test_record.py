"""Recorder: segments, events mode with masked pre-roll, retention, full disk."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from daemon.frames import Frame
from daemon.record import retention
from daemon.record.config import RecordingConfig
from daemon.record.recorder import Recorder
from tests._live import masked, probe, segments, wait_for

FPS = 25.0


def feed(rec: Recorder, frames: range, image=None) -> None:
    for i in frames:
        rec.submit(masked(i, i / FPS, image))


def test_continuous_segments_by_length_and_start_time(tmp_path: Path) -> None:
    cfg = RecordingConfig(path=tmp_path, segment_s=2.0, keyframe_s=1.0)
    written: list[int] = []
    rec = Recorder(cfg, "porch", FPS, on_written=lambda f, n: written.append(n))
    rec.start()
    feed(rec, range(125))  # 5 s
    rec.stop()
    files = segments(tmp_path)
    assert [p.relative_to(tmp_path).parts[0] for p in files] == ["porch"] * 3
    day = time.strftime("%Y-%m-%d")
    for p in files:
        assert p.parent.name == day
        assert p.name.startswith(f"porch_{day}_") and p.suffix == ".mp4"
    counts = [probe(p) for p in files]
    assert [c for c, _ in counts] == [50, 50, 25]
    assert all(err == "" for _, err in counts)
    assert written == list(range(125))


def test_recorder_refuses_raw_frames(tmp_path: Path) -> None:
    rec = Recorder(RecordingConfig(path=tmp_path), "cam", FPS)
    raw = Frame(np.zeros((8, 8, 3), np.uint8), 0, 0.0, 0.0)
    with pytest.raises(TypeError):
        rec.submit(raw)  # type: ignore[arg-type]


def test_events_mode_writes_pre_roll_event_and_post_roll(tmp_path: Path) -> None:
    cfg = RecordingConfig(path=tmp_path, mode="events", pre_roll_s=1.0, post_roll_s=1.0)
    rec = Recorder(cfg, "cam", FPS)
    rec.start()
    feed(rec, range(60))  # nothing recorded yet, only the last second kept in memory
    rec.set_event(True)
    feed(rec, range(60, 70))
    rec.set_event(False)
    feed(rec, range(70, 150))  # 1 s post-roll, then idle again
    rec.stop()
    files = segments(tmp_path)
    assert len(files) == 1
    n, err = probe(files[0])
    assert err == ""
    # 1 s pre-roll (frames 35..59, 25-26 frames), the event (10), 1 s post-roll (25-26)
    assert 58 <= n <= 63, n


def test_retention_by_age_and_budget(tmp_path: Path) -> None:
    cam = tmp_path / "cam"
    now = time.time()
    made = []
    for day, age_days in (("2026-01-01", 10), ("2026-01-05", 6), ("2026-01-06", 5)):
        d = cam / day
        d.mkdir(parents=True)
        p = d / f"cam_{day}_00-00-00.mp4"
        p.write_bytes(b"\0" * 1000)
        os.utime(p, (now - age_days * 86400, now - age_days * 86400))
        made.append(p)
    deleted = retention.enforce(
        cam, RecordingConfig(path=tmp_path, retain_days=7, min_free_percent=0), now=now
    )
    assert deleted == [made[0]]
    assert not (cam / "2026-01-01").exists()  # empty day folder removed
    budget = RecordingConfig(path=tmp_path, max_gb=1.5e-6, min_free_percent=0)  # 1500 bytes
    assert retention.enforce(cam, budget, now=now) == [made[1]]
    assert retention.enforce(cam, budget, keep=made[2], now=now) == []


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 3 MiB file system (tmpfs), so the disk really fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_keeps_files_playable_and_recording_resumes(small_disk: Path) -> None:
    cfg = RecordingConfig(path=small_disk, segment_s=2.0, keyframe_s=0.4, min_free_percent=0)
    rec = Recorder(cfg, "cam", FPS, queue_size=1000)
    rec.retry_after_error_s = 0.0
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)  # hard to compress
    errors: list[str] = []
    rec.start()
    for i in range(600):  # 24 s of video, far more than 3 MiB
        img = np.roll(noise, i * 7, axis=1)
        rec.submit(masked(i, i / FPS, img))
        if rec.error:
            errors.append(rec.error)
    rec.stop()
    assert any("disk full" in e for e in errors) or rec.frames_dropped > 0
    files = segments(small_disk)
    assert files, "nothing survived"
    assert rec.cut_segments
    for p in files:
        n, err = probe(p)
        assert err == "", (p.name, err)
        if p in rec.cut_segments:
            assert n % 10 == 0, (p.name, n)  # whole fragments (GOP of 10 frames) only
    # older segments were deleted to make room and recording went on to the end
    assert rec.frames_written > 200
    assert rec.frames_dropped > 0
    wait_for(lambda: not rec._thread.is_alive(), 5, "recorder thread end")
