"""Pipeline mechanics with real files, real encoder and a scripted stand-in detector.

The stand-in finds a bright square that the test draws into a real video, so the truth is
known for every frame. It is slow on purpose, so it sees only some frames, as on a Pi.
The end-to-end "no unmasked face" check with the real detector is in test_pipeline_faces.py.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.capture.sources import FileSource
from daemon.config import Config
from daemon.detect.errors import DetectorError, ModelError
from daemon.frames import MaskedFrame
from daemon.mask.masker import Masker
from daemon.pipeline import Pipeline
from daemon.regions import Detection
from daemon.state import StateStore
from tests._live import probe, segments, wait_for, write_clip

W, H, FPS, N = 320, 240, 25, 60
SQ = 30  # square side


def square_at(i: int) -> tuple[int, int] | None:
    """Where the bright square is in frame ``i`` (None before it appears at frame 17)."""
    if i < 17:
        return None
    return 20 + 6 * (i - 17), 100 + (i % 5)


@pytest.fixture(scope="module")
def square_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images = []
    for i in range(N):
        img = np.full((H, W, 3), 40, np.uint8)
        pos = square_at(i)
        if pos:
            img[pos[1] : pos[1] + SQ, pos[0] : pos[0] + SQ] = 250
        images.append(img)
    return write_clip(tmp_path_factory.mktemp("clip") / "square.mp4", images, FPS)


class SquareDetector:
    """Finds the bright square; ``delay_s`` makes it miss frames like a slow device."""

    def __init__(self, delay_s: float = 0.06) -> None:
        self.delay_s = delay_s
        self.seen: list[int] = []

    def detect(self, image: np.ndarray) -> list[Detection]:
        time.sleep(self.delay_s)  # stands in for inference time
        ys, xs = np.nonzero(image[:, :, 1] > 200)
        if len(xs) < 50:
            return []
        x0, y0 = xs.min(), ys.min()
        return [
            Detection(
                (float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)), 0.9
            )
        ]


class Failing:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def detect(self, image: np.ndarray) -> list[Detection]:
        raise self.exc


class Blocking:
    """A detector that hangs until released."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.release.wait(30)
        return []


class Recording:
    """A listener that keeps what it is told (frames as index/regions/obscured only)."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, list[Any], bool, str]] = []
        self.events: list[dict[str, Any]] = []
        self.stats: list[dict[str, Any]] = []

    def on_frame(self, frame: MaskedFrame, faces: int) -> None:
        assert isinstance(frame, MaskedFrame)
        self.frames.append((frame.index, list(frame.regions), frame.obscured, frame.reason))

    def on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def on_stats(self, stats: dict[str, Any]) -> None:
        self.stats.append(stats)


def make_cfg(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "camera": {"name": "t", "loop": False, "realtime": False},
        "recording": {"path": str(tmp_path / "rec"), "segment_s": 60},
    }
    for k, v in sections.items():
        data[k] = {**data.get(k, {}), **v}
    return Config.model_validate(data)


def run_pipeline(cfg: Config, clip: Path, detector: Any, **kw: Any) -> tuple[Pipeline, Recording]:
    src = FileSource(str(clip), loop=cfg.camera.loop, realtime=cfg.camera.realtime)
    p = Pipeline(cfg, src, detector, Masker(cfg.mask), fast=True, **kw)
    rec = Recording()
    p.add_listener(rec)
    p.start()
    assert p.wait(60), "pipeline did not finish"
    p.stop()
    return p, rec


def test_stats_say_whether_escrow_seals_and_to_which_key(tmp_path: Path, square_clip: Path) -> None:
    from nacl.public import PrivateKey

    from daemon.escrow.seal import Sealer

    cfg = make_cfg(tmp_path)
    p, _ = run_pipeline(cfg, square_clip, SquareDetector(delay_s=0.0))
    assert p.stats()["escrow"] == "off"
    sealer = Sealer(cfg.escrow, PrivateKey.generate().public_key)
    src = FileSource(str(square_clip), loop=False, realtime=False)
    p = Pipeline(cfg, src, SquareDetector(delay_s=0.0), Masker(cfg.mask, sealer), fast=True)
    assert p.stats()["escrow"] == sealer.fingerprint and sealer.fingerprint.startswith("SHA256:")


def covers(region_box: tuple[int, ...], x: int, y: int) -> bool:
    rx, ry, rw, rh = region_box
    return rx <= x and ry <= y and rx + rw >= x + SQ and ry + rh >= y + SQ


def test_every_frame_with_the_square_is_masked_even_before_first_detection(
    tmp_path: Path, square_clip: Path
) -> None:
    det = SquareDetector(delay_s=0.06)
    cfg = make_cfg(tmp_path, mask={"shape": "box"})
    p, rec = run_pipeline(cfg, square_clip, det)
    assert [i for i, *_ in rec.frames] == list(range(N))  # in order, none dropped
    assert p.frames_obscured == 0
    assert p.detector_runs < N  # the detector saw only some frames
    for i, regions, obscured, _ in rec.frames:
        pos = square_at(i)
        if pos is None:
            continue
        assert not obscured
        assert any(covers(r.box, *pos) for r in regions), (i, pos, [r.box for r in regions])
    # the recording holds the same number of frames and plays
    files = segments(tmp_path / "rec")
    assert sum(probe(f)[0] for f in files) == N
    assert all(probe(f)[1] == "" for f in files)


def test_events_start_and_end_with_tracks(tmp_path: Path, square_clip: Path) -> None:
    cfg = make_cfg(tmp_path, track={"hold_s": 0.2})
    _, rec = run_pipeline(cfg, square_clip, SquareDetector(0.0))
    kinds = [e["type"] for e in rec.events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert rec.events[0]["count"] == 1 and rec.events[0]["label"] == "face"
    assert len({e["id"] for e in rec.events}) == 1
    assert rec.stats and rec.stats[-1]["frames_total"] == N
    assert rec.stats[-1]["source_state"] == "ended"


def test_failing_detector_obscures_every_frame_and_counts_it(
    tmp_path: Path, square_clip: Path
) -> None:
    cfg = make_cfg(tmp_path, gate={"deadline_ms": 100})
    p, rec = run_pipeline(cfg, square_clip, Failing(DetectorError("interpreter exploded")))
    assert len(rec.frames) == N
    assert all(obscured and reason == "detection-failed" for _, _, obscured, reason in rec.frames)
    assert p.frames_obscured == N and p.detector_errors > 0


def test_drop_mode_drops_and_counts(tmp_path: Path, square_clip: Path) -> None:
    cfg = make_cfg(tmp_path, gate={"deadline_ms": 100, "on_missing": "drop"})
    p, rec = run_pipeline(cfg, square_clip, Failing(DetectorError("no")))
    assert rec.frames == [] and p.frames_dropped == N
    assert segments(tmp_path / "rec") == []


def test_model_failure_records_nothing(tmp_path: Path, square_clip: Path) -> None:
    cfg = make_cfg(tmp_path)
    p, rec = run_pipeline(cfg, square_clip, Failing(ModelError("model.tflite: sha256 mismatch")))
    assert p.fatal and "sha256" in p.fatal
    assert rec.frames == []
    assert all(probe(f)[0] == 0 for f in segments(tmp_path / "rec"))


def test_hung_detector_obscures_at_the_deadline(tmp_path: Path, square_clip: Path) -> None:
    det = Blocking()
    cfg = make_cfg(tmp_path, gate={"deadline_ms": 50})
    src = FileSource(str(square_clip), loop=False, realtime=False)
    p = Pipeline(cfg, src, det, Masker(cfg.mask))  # wall-clock deadline, as for a camera
    rec = Recording()
    p.add_listener(rec)
    p.start()
    wait_for(lambda: len(rec.frames) >= 20, 20, "obscured frames while the detector hangs")
    assert all(o and r == "detection-missing" for _, _, o, r in rec.frames[:20])
    det.release.set()
    p.stop()


def test_privacy_mode_obscures_and_persists(tmp_path: Path, square_clip: Path) -> None:
    cfg = make_cfg(tmp_path)
    state = StateStore(cfg.recording.resolved_state_file())
    src = FileSource(str(square_clip), loop=False, realtime=False)
    p = Pipeline(cfg, src, SquareDetector(0.0), Masker(cfg.mask), fast=True, state=state)
    p.set_privacy(True)
    rec = Recording()
    p.add_listener(rec)
    p.start()
    assert p.wait(60)
    p.stop()
    assert rec.frames and all(o and r == "privacy" for _, _, o, r in rec.frames)
    assert StateStore(cfg.recording.resolved_state_file()).switches.privacy is True
    assert p.frames_obscured == 0  # privacy is not a gate failure


def test_recording_switch_off_writes_nothing_but_listeners_get_frames(
    tmp_path: Path, square_clip: Path
) -> None:
    cfg = make_cfg(tmp_path)
    state = StateStore(cfg.recording.resolved_state_file())
    state.update(recording=False)
    _, rec = run_pipeline(cfg, square_clip, SquareDetector(0.0), state=state)
    assert len(rec.frames) == N
    assert segments(tmp_path / "rec") == []


def test_live_config_change_applies_without_restart(tmp_path: Path, square_clip: Path) -> None:
    cfg = make_cfg(tmp_path, camera={"loop": True, "realtime": True})
    src = FileSource(str(square_clip), loop=True, realtime=True)
    p = Pipeline(cfg, src, SquareDetector(0.0), Masker(cfg.mask))
    rec = Recording()
    p.add_listener(rec)
    p.start()
    try:
        wait_for(lambda: len(rec.frames) >= 10, 30, "frames")
        new_rec = tmp_path / "rec2"
        new = make_cfg(
            tmp_path,
            camera={"loop": True, "realtime": True},
            recording={"path": str(new_rec)},
            mask={"style": "fill"},
        )
        p.apply(new)
        wait_for(lambda: segments(new_rec), 30, "a segment under the new path")
        wait_for(lambda: p.masker.cfg.style == "fill", 5, "new masker")
    finally:
        p.stop()
    assert p.capture.frames >= len(rec.frames)  # one capture, never restarted
    for f in segments(tmp_path / "rec") + segments(new_rec):
        n, err = probe(f)
        assert n > 0 and err == "", f


def test_events_mode_records_around_the_face_only(tmp_path: Path, square_clip: Path) -> None:
    cfg = make_cfg(
        tmp_path,
        track={"hold_s": 0.2},
        gate={"deadline_ms": 200, "queue_frames": 5},
        recording={"mode": "events", "pre_roll_s": 0.2, "post_roll_s": 0.0},
    )
    # the square is visible from frame 17 to the end (59). It is first detected on a frame
    # at or after 17; the tracker masks it back to hold_s (5 frames) before that (its hold is
    # never below the deadline nor the gap between detections: both 0.2 s here), so the event
    # starts between frame 12 and 17, and the recording 0.2 s (5 frames) of pre-roll earlier.
    run_pipeline(cfg, square_clip, SquareDetector(0.0))
    files = segments(tmp_path / "rec")
    assert len(files) == 1
    n, err = probe(files[0])
    assert err == ""
    assert N - 17 <= n <= N - 17 + 5 + 5 + 1, n


def test_state_file_survives_restarts_and_corruption(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    StateStore(path).update(privacy=True, recording=False)
    again = StateStore(path).switches
    assert (again.privacy, again.recording) == (True, False)
    path.write_text("{not json")
    fresh = StateStore(path).switches  # unreadable: privacy on (fail closed), logged, no crash
    assert (fresh.privacy, fresh.recording) == (True, True)
    path.unlink()
    assert StateStore(path).switches.privacy is False  # no file: defaults


def test_fast_file_waits_for_a_slow_detector_instead_of_blanking(
    tmp_path: Path, square_clip: Path
) -> None:
    """--fast: a detector slower than the deadline slows the file down; nothing is blanked."""
    det = SquareDetector(delay_s=0.15)
    cfg = make_cfg(tmp_path, gate={"deadline_ms": 100}, mask={"shape": "box"})
    p, rec = run_pipeline(cfg, square_clip, det)
    assert p.frames_obscured == 0 and len(rec.frames) == N
    for i, regions, _, _ in rec.frames:
        pos = square_at(i)
        if pos is not None:
            assert any(covers(r.box, *pos) for r in regions), i
    # the detector never fell more than the deadline behind: about every 2nd frame at 25 fps
    assert p.detector_runs >= N * 0.04 / 0.1 * 0.9


def test_fast_file_detects_once_per_queue_of_new_frames(tmp_path: Path, square_clip: Path) -> None:
    """--fast with a quick detector: one detection per ``queue_frames`` new frames, not one per
    frame (a live camera at the file's rate would not get more), and every square still masked.
    A detector failing every other run must not stall the file (the gate needs the next run)."""
    q = 6
    cfg = make_cfg(tmp_path, gate={"queue_frames": q}, mask={"shape": "box"})
    p, rec = run_pipeline(cfg, square_clip, SquareDetector(delay_s=0.0))
    assert p.frames_obscured == 0 and len(rec.frames) == N
    for i, regions, _, _ in rec.frames:
        pos = square_at(i)
        if pos is not None:
            assert any(covers(r.box, *pos) for r in regions), i
    assert N / q <= p.detector_runs <= N / (q - 1) + 2, p.detector_runs

    class Flaky(SquareDetector):
        def detect(self, image: np.ndarray) -> list[Detection]:
            self.seen.append(0)
            if len(self.seen) % 2 == 0:
                raise DetectorError("every other run fails")
            return super().detect(image)

    cfg = make_cfg(tmp_path / "flaky", gate={"queue_frames": q})
    p, rec = run_pipeline(cfg, square_clip, Flaky(delay_s=0.0))
    assert len(rec.frames) == N and p.detector_errors >= 1
    # a failure blanks one held frame to make room (more only at the end of the file)
    assert p.frames_obscured <= p.detector_errors + q, (p.frames_obscured, p.detector_errors)


def test_fast_file_with_frames_further_apart_than_the_deadline(tmp_path: Path) -> None:
    """A time-lapse file (1 frame per second, deadline 500 ms) plays through with --fast: the
    hold-back that keeps the detector within the deadline must not wait for a frame that only
    its own delivery could let the detector take."""
    images = []
    for i in range(6):
        img = np.full((H, W, 3), 40, np.uint8)
        img[100 : 100 + SQ, 20 + 30 * i : 20 + 30 * i + SQ] = 250
        images.append(img)
    clip = write_clip(tmp_path / "timelapse.mp4", images, 1)
    cfg = make_cfg(tmp_path, mask={"shape": "box"})
    p, rec = run_pipeline(cfg, clip, SquareDetector(delay_s=0.0))
    assert len(rec.frames) == 6 and p.frames_obscured == 0
    assert all(any(covers(r.box, 20 + 30 * i, 100) for r in regs) for i, regs, _, _ in rec.frames)


def test_detector_yields_to_frames_its_last_result_already_covers(
    tmp_path: Path, square_clip: Path
) -> None:
    """At real-time pace with slow masking/writing downstream, the detector does not start a
    run while frames covered by its previous result are still waiting to go out: running
    back to back it took the CPU those frames needed and frames were blanked at the deadline."""
    starts: list[tuple[int, int]] = []  # (frames emitted so far, previous taken index)

    class Watching(SquareDetector):
        prev: int | None = None

        def detect(self, image: np.ndarray) -> list[Detection]:
            if self.prev is not None and not p.capture.ended.is_set():  # at the end it may not
                starts.append((p.frames_total, self.prev))
            self.prev = p._taken_index
            return super().detect(image)

    class SlowSink(Recording):
        def on_frame(self, frame: MaskedFrame, faces: int) -> None:
            time.sleep(0.06)  # masking and encoding a large frame: slower than 25 fps
            super().on_frame(frame, faces)

    # a deadline the slow sink cannot miss: this test is about when detection runs
    cfg = make_cfg(
        tmp_path, camera={"realtime": True}, mask={"shape": "box"}, gate={"deadline_ms": 3000}
    )
    src = FileSource(str(square_clip), loop=False, realtime=True)
    p = Pipeline(cfg, src, Watching(delay_s=0.0), Masker(cfg.mask), fast=False)
    sink = SlowSink()
    p.add_listener(sink)
    p.start()
    assert p.wait(60), "pipeline did not finish"
    p.stop()
    assert len(sink.frames) == N and p.frames_obscured == 0
    assert len(starts) >= 5
    # frames up to the previous detection are out (one may be in flight) when a run starts
    assert all(emitted >= prev for emitted, prev in starts), [s for s in starts if s[0] < s[1]]


def test_a_detector_too_slow_for_the_deadline_turns_board_overloaded_on(
    tmp_path: Path, square_clip: Path
) -> None:
    """Measured, not projected: on a board with no projection this is the owner's only sign
    (Home Assistant's "Board overloaded") that frames are being blanked or held."""
    cfg = make_cfg(tmp_path, gate={"deadline_ms": 100})
    p, _ = run_pipeline(cfg, square_clip, SquareDetector(delay_s=0.08))
    s = p.stats()
    assert s["board_overloaded"] is True and s["detector_ms"] > 50
    assert s["detect_profile_reason"].startswith("measured: a detector run takes")
    fast, _ = run_pipeline(make_cfg(tmp_path / "b"), square_clip, SquareDetector(delay_s=0.0))
    assert fast.stats()["board_overloaded"] is False
