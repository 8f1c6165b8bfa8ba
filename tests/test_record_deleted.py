"""Issue 11.10: the recording directory deleted while the daemon writes into it.

The open segment used to be logged "segment finished" though it was gone, and nothing said so.
Now the daemon notices within a second, says so in the log, makes the directories again and goes
on in a new segment; the deleted segment is copied back from the unlinked file the encoder still
holds open, and both play.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import av

from tests._live import wait_for
from tests.test_run import finish, start, write_config


def test_deleted_recording_dir_is_reported_and_recording_goes_on(
    tmp_path: Path, data_dir: Path
) -> None:
    rec = tmp_path / "rec"
    cfg = write_config(
        tmp_path / "c.yaml",
        rec,
        camera=f"  source: {data_dir / 'videos' / 'intel_one-by-one-person-detection.mp4'}\n",
    )
    cfg.write_text(cfg.read_text().replace("segment_s: 2", "segment_s: 600"))
    p = start(["--config", str(cfg)])
    try:
        first = wait_for(
            lambda: [f for f in rec.rglob("*.mp4") if f.stat().st_size > 20_000],
            120,
            "the first segment growing",
        )
        shutil.rmtree(rec / "testcam")
        wait_for(
            lambda: [f for f in rec.rglob("*.mp4") if f.stat().st_size > 20_000],
            60,
            "a new segment after the deletion",
        )
    finally:
        p.send_signal(signal.SIGTERM)
        code, err = finish(p)
    assert code == 0, err[-2000:]
    assert "open segment deleted, starting a new one" in err
    assert "deleted segment recovered" in err
    with av.open(str(first[0])) as c:  # copied back from the file the encoder still held
        assert sum(1 for _ in c.decode(video=0)) > 10
    finished = [line for line in err.splitlines() if "segment finished" in line]
    assert not any(str(first[0]) in line for line in finished), finished
    segs = sorted(rec.rglob("*.mp4"))
    assert len(segs) == 2 and first[0] in segs  # the recovered one and the new one
    with av.open(str(segs[-1])) as c:  # the new segment plays too
        assert sum(1 for _ in c.decode(video=0)) >= 1
