"""Issue 11.11-11.13 with the real daemon and broker: what Home Assistant sees across a crash.

* 11.12: a crashed run's retained stats (Faces=5 while Face=off) are replaced as soon as the new
  run connects, not only once its pipeline has figures;
* 11.13: an event open at a crash (kill -9) gets its ``end`` on the next start, marked
  ``interrupted``;
* 11.11: "Recording disk use" counts the open segment, so it grows during the first segment.
"""

from __future__ import annotations

import itertools
import json
import signal
from pathlib import Path

import pytest

from tests._mqtt import Broker, Watcher
from tests.test_mqtt_daemon import BASE, last, start, write_config


@pytest.fixture
def broker(tmp_path: Path):
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def events(w: Watcher) -> list[dict]:
    return [json.loads(m.payload) for m in w.on(f"{BASE}/events")]


def stats(w: Watcher) -> list[dict]:
    return [json.loads(m.payload) for m in w.on(f"{BASE}/stats") if not m.retain]


def test_a_crashed_runs_stats_and_open_event_are_replaced_on_restart(
    tmp_path: Path, broker: Broker, data_dir: Path
) -> None:
    clip = data_dir / "videos" / "intel_asl_gestures" / "again.mkv"  # the signer's face throughout
    cfg = write_config(tmp_path, broker, clip, loop=True)
    w = Watcher(broker, (f"{BASE}/#",)).start()
    p = start(cfg, tmp_path / "run1.log")
    try:
        # the state file keeps every label's open event: here a face's and a person's
        w.wait(
            lambda ms: (
                {"face", "person"} <= {e["label"] for e in events(w) if e["type"] == "start"}
            ),
            60,
            "a face event and a person event",
        )
        w.wait(lambda ms: any(s["faces"] >= 1 for s in stats(w)), 30, "stats with the face")
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    opened = {e["label"]: e for e in events(w) if e["type"] == "start"}
    assert not any(e["type"] == "end" for e in events(w))  # killed: no end was sent
    w.stop()

    # a dead process's retained figures, as Home Assistant would keep showing them
    w = Watcher(broker, (f"{BASE}/#",)).start()
    w.wait(lambda ms: w.on(f"{BASE}/stats"), 10, "the retained stats")
    assert json.loads(w.on(f"{BASE}/stats")[-1].payload)["faces"] >= 1
    w.clear()
    p = start(cfg, tmp_path / "run2.log")
    try:
        first = w.wait(lambda ms: stats(w), 60, "the new run's first stats")
        assert first[0]["faces"] == 0, first[0]  # not the crashed run's count
        w.wait(
            lambda ms: (
                {e["id"] for e in events(w) if e["type"] == "end"}
                >= {e["id"] for e in opened.values()}
            ),
            60,
            "an end for each event the crash left open",
        )
        for label, ev in opened.items():
            end = next(e for e in events(w) if e["type"] == "end" and e["id"] == ev["id"])
            assert end.get("interrupted") is True and end["label"] == label
            assert end["end"] >= ev["start"]
        w.wait(lambda ms: last(w, "face") == b"ON", 60, "the face seen again")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(60)
        w.stop()


def test_recording_disk_use_grows_while_the_first_segment_is_open(
    tmp_path: Path, broker: Broker, data_dir: Path
) -> None:
    clip = data_dir / "videos" / "intel_asl_gestures" / "again.mkv"
    cfg = write_config(tmp_path, broker, clip, loop=True)
    cfg.write_text(cfg.read_text().replace("segment_s: 2", "segment_s: 600"))
    w = Watcher(broker, (f"{BASE}/stats",)).start()
    p = start(cfg, tmp_path / "run.log")
    try:
        w.wait(
            lambda ms: any((s.get("recording_bytes") or 0) > 10_000 for s in stats(w)),
            60,
            "disk use above 10 kB while the first 10-minute segment is open",
        )
        segs = list((tmp_path / "rec").rglob("*.mp4"))
        assert len(segs) == 1  # one segment, still open
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(60)
        w.stop()


def test_a_busy_scene_is_rate_limited_without_delaying_start_and_end(
    tmp_path: Path, broker: Broker, data_dir: Path
) -> None:
    """Issue 11.14: a crowd changes the face count several times a second. Updates go out at
    most every ``event_update_min_s`` (2 s), event snapshots at most every
    ``event_snapshot_min_s`` (5 s) besides one per start; every event still gets its end, and
    no update follows an end."""
    clip = data_dir / "videos" / "facenet-pytorch_video.mp4"  # a crowd walking at the camera
    cfg = write_config(tmp_path, broker, clip, loop=True, mqtt="  snapshot_interval_s: 0\n")
    w = Watcher(broker, (f"{BASE}/events", f"{BASE}/snapshot")).start()
    p = start(cfg, tmp_path / "run.log")
    try:
        w.wait(lambda ms: any(e["type"] == "start" for e in events(w)), 60, "an event")
        t0 = w.on(f"{BASE}/events")[0].t
        w.wait(lambda ms: ms and ms[-1].t - t0 > 12, 60, "12 s of a busy scene")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(60)
        w.stop()
    msgs = w.on(f"{BASE}/events")
    evs = [(m.t, json.loads(m.payload)) for m in msgs]
    starts = [e for _, e in evs if e["type"] == "start"]
    assert starts and all(e["type"] == "end" for _, e in evs[-1:])  # SIGTERM ends the last one
    for ev in starts:
        mine = [(t, e) for t, e in evs if e["id"] == ev["id"]]
        assert mine[0][1]["type"] == "start" and mine[-1][1]["type"] == "end"
        ups = [t for t, e in mine if e["type"] == "update"]
        assert all(b - a >= 1.9 for a, b in itertools.pairwise(ups)), ups
    updates = sum(1 for _, e in evs if e["type"] == "update")
    assert updates >= 2, "the scene is busy: some updates were sent"
    span = evs[-1][0] - evs[0][0]
    snaps = w.on(f"{BASE}/snapshot")
    assert len(snaps) <= len(starts) + span / 5 + 1, (len(snaps), len(starts), span)
