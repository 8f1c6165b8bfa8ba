"""capture → detect → track → gate → mask → sinks, in four threads that overlap.

* capture thread (``daemon.capture.runner``): appends raw frames to ``pending`` (bounded by
  ``gate.queue_frames``; a file source waits for room, a live source drops and counts) and
  offers the newest one to the detector;
* detector thread: always runs on the newest frame not yet detected, so it detects as many
  frames as the CPU allows and never falls behind;
* output thread: takes frames in order, feeds results to the tracker and the gate, and masks a
  frame only once a detection at or after it is in (so a face first seen in a later frame is
  masked in the frames held before it), else obscures/drops it at the deadline; then hands the
  masked frame to the recorder and the listeners;
* recorder thread (``daemon.record.recorder``): H.264 encoding and disk.

Raw frames exist only in ``pending``, in the detector's hands and in the output thread's local
variable while it is masked; nothing else ever sees one.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from daemon.capture.runner import CaptureRunner
from daemon.capture.sources import Source
from daemon.config import Config
from daemon.detect.combined import detect_frame
from daemon.detect.people_config import object_labels
from daemon.event_streams import EventStreams
from daemon.events import STATS_PERIOD_S, PipelineListener
from daemon.frames import Frame, MaskedFrame
from daemon.gate import DetectionResult, Gate
from daemon.logs import fields
from daemon.mask.check import checked_masker
from daemon.mask.masker import grow
from daemon.mask.people import for_tracking, tracked_mask_box
from daemon.record.recorder import Recorder
from daemon.regions import Detection, Region
from daemon.state import StateStore
from daemon.track.tracker import TrackedBox, Tracker

log = logging.getLogger(__name__)

__all__ = ["Pipeline", "PipelineListener"]


class DetectorLike(Protocol):
    def detect(self, image_bgr: np.ndarray) -> list[Detection]: ...


class MaskerLike(Protocol):
    def regions(self, detections: list[Detection], width: int, height: int) -> list[Region]: ...
    def mask(self, frame: Frame, regions: list[Region]) -> MaskedFrame: ...
    def obscure(self, frame: Frame, reason: str) -> MaskedFrame: ...


def source_fps(cfg: Config, source: object) -> float:
    """The camera's frame rate: configured, else the source's, else 25."""
    return float(cfg.camera.fps or getattr(source, "fps", None) or 25.0)


class Pipeline:
    """One camera's running pipeline. Thread-safe controls: see ``daemon.events``."""

    def __init__(
        self,
        cfg: Config,
        source: Source,
        detector: DetectorLike,
        masker: MaskerLike,
        *,
        fast: bool = False,
        state: StateStore | None = None,
        on_written: Callable[[MaskedFrame, int], None] | None = None,
        heartbeat: Callable[[], None] | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.detector = detector
        self.masker = masker
        self.fast = fast
        self.state = state or StateStore(None)
        self._on_written_ext = on_written
        self._heartbeat = heartbeat or (lambda: None)
        self._on_ready = on_ready
        self._ready_sent = False
        self.listeners: list[PipelineListener] = []
        self._privacy = self.state.switches.privacy
        self._recording_on = self.state.switches.recording
        self.gate = Gate(cfg.gate, wall_clock=not fast)
        self.tracker = Tracker(cfg.track, bridge_s=cfg.gate.deadline_ms / 1000.0)
        # face, and person, car, dog, cat: one event stream each
        self._events = EventStreams(
            cfg.camera.name, object_labels(cfg.detect.people), self.state, lambda: self.listeners
        )
        self._cond = threading.Condition()
        self._pending: deque[Frame] = deque()
        self._latest: Frame | None = None
        self._new_results: list[DetectionResult] = []
        self._stopping = False
        self._new_cfg: Config | None = None
        self._applied: bool | None = None  # the output thread's answer to apply()
        self._stop_detect = False
        self._detecting = False  # the detector holds a frame right now
        self._capture_held = False  # a file source waits for room (--fast back-pressure)
        self._taken_index: int | None = None  # index of the newest frame the detector took
        self._last_ok = True  # the detector's last run succeeded
        self._taken_pts: float | None = None  # pts of the newest frame the detector took
        self.fatal: str | None = None  # set when the detector model failed: nothing is recorded
        self.done = threading.Event()
        self.recorder: Recorder | None = None
        self.capture = CaptureRunner(
            source,
            cfg.camera,
            self._deliver,
            on_progress=self._capture_progress,
            on_ended=self._wake,
        )
        self._detect_thread = threading.Thread(target=self._detect_loop, name="detect", daemon=True)
        self._output_thread = threading.Thread(target=self._output_loop, name="output", daemon=True)
        # counters (written by one thread each, read for stats)
        self.frames_total = 0
        self.frames_obscured = 0
        self.frames_dropped = 0
        self.detector_errors = 0
        self.detector_runs = 0
        self.faces = 0
        self._last_detect_done = time.monotonic()
        self._det_ms: deque[float] = deque(maxlen=200)
        self._speed_warned = False
        self._latency_ms: deque[float] = deque(maxlen=200)
        self._stats_t = time.monotonic()
        self._stats_frames = 0
        self._stats_runs = 0

    # -- controls ----------------------------------------------------------------------------

    @property
    def privacy(self) -> bool:
        return self._privacy

    @property
    def recording(self) -> bool:
        return self._recording_on and self.cfg.recording.enabled

    def set_privacy(self, on: bool) -> None:
        self._privacy = bool(on)
        self.state.update(privacy=bool(on))
        log.info("privacy mode", extra=fields(on=bool(on)))

    def set_recording(self, on: bool) -> None:
        self._recording_on = bool(on)
        self.state.update(recording=bool(on))
        if self.recorder is not None:
            self.recorder.set_enabled(bool(on))
        log.info("recording switched", extra=fields(on=bool(on)))

    def add_listener(self, listener: PipelineListener) -> None:
        self.listeners = [*self.listeners, listener]

    LIVE_SECTIONS = frozenset({"track", "mask", "gate", "recording"})

    def apply(self, cfg: Config, timeout: float = 15.0) -> bool:
        """Take a new config whose changes are all in :data:`LIVE_SECTIONS`, without a restart.

        Tracker, gate and masker settings switch at the next frame; a changed ``recording``
        section finishes the current segment and continues with a new recorder. The output
        thread does the swap (a new mask config is first tried on a test frame there), so no
        frame goes to a half-replaced stage. Returns False, with the running config kept, when
        the new one cannot be installed (or the output thread does not take it in ``timeout``).
        """
        with self._cond:
            self._new_cfg = cfg
            self._applied = None
            self._cond.notify_all()
            end = time.monotonic() + timeout
            while self._applied is None and not self.done.is_set():
                if self._new_cfg is cfg and time.monotonic() >= end:
                    self._new_cfg = None  # not taken: withdraw it
                    log.error("config not applied in time, keeping the running one")
                    return False
                self._cond.wait(0.2)
            return bool(self._applied)

    def _swap_config(self) -> None:
        """Output thread: install a config handed over by :meth:`apply`, or keep the old one."""
        with self._cond:
            cfg, self._new_cfg = self._new_cfg, None
        if cfg is None:
            return
        try:
            self._install(cfg)
            ok = True
            log.info("config applied without restart")
        except Exception as exc:
            log.error("config not applied, keeping the running one", extra=fields(error=exc))
            ok = False
        with self._cond:
            self._applied = ok
            self._cond.notify_all()

    def _install(self, cfg: Config) -> None:
        """Build what the new config needs first; change nothing running if that fails."""
        old = self.cfg
        masker = self.masker
        if cfg.mask != old.mask:
            masker = checked_masker(cfg.mask, getattr(self.masker, "sealer", None))
        if cfg.recording != old.recording:
            self._swap_recorder(cfg, old)
        self.tracker.cfg = cfg.track
        self.tracker.bridge_s = cfg.gate.deadline_ms / 1000.0
        self.gate.cfg = cfg.gate
        self.gate.deadline_s = cfg.gate.deadline_ms / 1000.0
        self.masker = masker
        self.cfg = cfg

    def _swap_recorder(self, cfg: Config, old: Config) -> None:
        """Finish the segment and go on with ``cfg``'s recorder; back to ``old``'s if it fails."""
        rec, self.recorder = self.recorder, None
        if rec is not None:
            rec.stop()
        try:
            self.recorder = self._new_recorder(cfg)
        except Exception:
            self.recorder = self._new_recorder(old)
            raise

    def _new_recorder(self, cfg: Config) -> Recorder | None:
        if not cfg.recording.enabled:
            return None
        rec = Recorder(
            cfg.recording,
            cfg.camera.name,
            self.source_fps(),
            on_written=self._written,
            sealer=getattr(self.masker, "sealer", None),
        )
        rec.enabled = self._recording_on
        rec.start()
        if self._any_event():
            rec.set_event(True)
        return rec

    def _any_event(self) -> bool:
        return self._events.active()

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._events.end_interrupted()
        self.recorder = self._new_recorder(self.cfg)
        self._maybe_stats(force=True)  # fresh figures at once, not a crashed run's retained ones
        self._detect_thread.start()
        self._output_thread.start()
        self.capture.start()

    def source_fps(self) -> float:
        return source_fps(self.cfg, self.source)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop capturing, emit what is held (masked or obscured), finish the segment.

        A source stuck in a read (a hung device) is abandoned after a few seconds: its thread
        is a daemon thread and the frames already held are still emitted.
        """
        self.capture.stop()
        self.capture.join(min(timeout, 3.0))
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self.wait(timeout)
        self._shutdown(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Until the source has ended and every held frame has been emitted."""
        return self.done.wait(timeout)

    def _shutdown(self, timeout: float) -> None:
        with self._cond:
            self._stop_detect = True
            self._cond.notify_all()
        self._output_thread.join(timeout)
        self._detect_thread.join(timeout)
        if self.recorder is not None:
            self.recorder.stop(timeout)

    # -- capture side ------------------------------------------------------------------------

    def _deliver(self, frame: Frame) -> bool:
        with self._cond:
            if self.fatal:
                return False
            if self.source.live:
                if len(self._pending) >= self.cfg.gate.queue_frames:
                    self.frames_dropped += 1
                    return False
            else:
                while not self._stop_detect and (
                    len(self._pending) >= self.cfg.gate.queue_frames or self._too_far(frame)
                ):
                    self._capture_held = True
                    self._cond.notify_all()
                    self._cond.wait(1.0)
                self._capture_held = False
            self._pending.append(frame)
            self._latest = frame
            self._cond.notify_all()
        return True

    def _too_far(self, frame: Frame) -> bool:
        """--fast: hold the file back while the detector is most of a deadline behind it."""
        if not self.fast:
            return False
        if self._taken_pts is None:
            # before the detector's first run: it takes the newest frame, which must still
            # cover the first (frames 1 s apart: it took frame 3 and frames 0-2 went black)
            return bool(self._pending) and frame.pts - self._pending[0].pts > 0.9 * (
                self.gate.deadline_s
            )
        if not self._detecting and self._latest is None:
            return False  # the detector has nothing to catch up on (e.g. frames 1 s apart)
        return frame.pts - self._taken_pts > 0.9 * self.gate.deadline_s

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _hold_detector(self) -> bool:
        """Should the detector wait before taking the newest frame?

        * It yields to the output: no new run while frames its last result already covers
          are still waiting to be masked and written. Running back to back, it took the CPU
          those frames needed; at 1080p on 2 cores a real-time file fell to 21 fps with
          frames blanked at the deadline. Yielding, the detector runs as often as the CPU
          allows once every covered frame is out (every ~5.5 frames at 1080p, ~2.5 at 720p).
        * --fast also waits until the file waits for room: one detection per full queue of
          new frames, as a live camera at the file's rate would get at most, and never more
          than ``queue_frames`` frames or the deadline in video time (``_too_far``) apart.

        Never held after a failed run (the gate needs the next result), at the start, or once
        the source has ended or the pipeline is stopping.
        """
        if self._taken_index is None or not self._last_ok:
            return False
        if self.capture.ended.is_set() or self._stopping:
            return False
        covered_waiting = bool(self._pending) and self._pending[0].index <= self._taken_index
        if covered_waiting:
            return True
        return self.fast and not self._capture_held

    def _capture_progress(self) -> None:
        if self.capture.state in ("lost", "retrying"):
            self._heartbeat()  # the retry loop is alive; frames cannot be expected

    # -- detector ----------------------------------------------------------------------------

    def _detect_loop(self) -> None:
        from daemon.detect.errors import ModelError

        while True:
            with self._cond:
                while (self._latest is None or self._hold_detector()) and not self._stop_detect:
                    self._cond.wait(1.0)
                if self._latest is None:
                    return
                frame, self._latest = self._latest, None
                self._detecting = True
                self._taken_pts = frame.pts
                self._taken_index = frame.index
                self._cond.notify_all()
            t0 = time.monotonic()
            try:
                dets = detect_frame(self.detector, frame.image, frame.pts)
                done = time.monotonic()
                r = DetectionResult(frame.index, frame.pts, done, list(dets), ms=(done - t0) * 1e3)
            except ModelError as exc:
                self._fail(f"detector model failed: {exc}")
                return
            except Exception as exc:  # DetectorError or anything else: fail closed for frames
                done = time.monotonic()
                r = DetectionResult(frame.index, frame.pts, done, None, error=str(exc))
                if self.detector_errors % 100 == 0:
                    log.error("detection failed", extra=fields(frame=frame.index, error=exc))
                self.detector_errors += 1
            del frame
            with self._cond:
                self._detecting = False
                self.detector_runs += 1
                self._last_detect_done = done
                if r.ok:
                    self._det_ms.append(r.ms)
                    self._check_detector_speed()
                self._last_ok = r.ok
                self._new_results.append(r)
                self._cond.notify_all()

    def _too_slow_ms(self) -> float | None:
        """The detector's median run (after 10) when it takes more than half the deadline:
        a frame that just missed one run then waits longer than the deadline for the next."""
        if len(self._det_ms) < 10:
            return None
        ms = statistics.median(self._det_ms)
        return ms if 2 * ms > self.cfg.gate.deadline_ms else None

    def _check_detector_speed(self) -> None:
        """Warn once when the detector is too slow for the deadline (frames will be blanked)."""
        if self._speed_warned:
            return
        ms = self._too_slow_ms()
        if ms is not None:
            self._speed_warned = True
            log.warning(
                "detector too slow for gate.deadline_ms: many frames will be obscured; raise "
                "the deadline or choose a lighter detect schedule",
                extra=fields(detector_ms=round(ms), deadline_ms=self.cfg.gate.deadline_ms),
            )

    def _fail(self, why: str, what: str = "nothing is recorded without a working detector") -> None:
        log.critical(f"stopping: {what}", extra=fields(error=why))
        with self._cond:
            self.fatal = why
            self._pending.clear()
            self._cond.notify_all()
        self.capture.stop()

    # -- output ------------------------------------------------------------------------------

    def _next(self) -> tuple[Frame, str, str] | bool | None:
        """The head frame's verdict: (frame, verdict, reason); False when idle, None at the end."""
        with self._cond:
            while True:
                for r in self._new_results:
                    self.gate.add(r)
                    if r.ok:
                        mode = self.cfg.mask.people  # heads: the tracker follows heads
                        dets = [for_tracking(d, mode) for d in r.detections or []]
                        self.tracker.update(r.index, r.pts, dets)
                self._new_results.clear()
                if self.fatal:
                    self._pending.clear()
                    return None
                if self._new_cfg is not None:
                    return False  # the output loop installs it before the next frame
                if not self._pending:
                    if self.capture.ended.is_set() or self._stopping:
                        return None
                    self._cond.wait(0.5)
                    return False
                head = self._pending[0]
                # no further result can come: the source ended, or a file waits for room that
                # only this frame's going can make (the detector failed on the newest frame)
                final = (
                    (self.capture.ended.is_set() or self._capture_held)
                    and self._latest is None
                    and not self._detecting
                    and not self._new_results
                )
                d = self.gate.decide(
                    head.index, head.pts, head.captured, time.monotonic(), final=final
                )
                if d.verdict == "wait":
                    self._cond.wait(min(d.wait_s, 0.5))
                    continue
                self._pending.popleft()
                self._capture_held = False  # room made; a capture still blocked says so again
                self._cond.notify_all()
                return head, d.verdict, d.reason

    def _output_loop(self) -> None:
        try:
            while True:
                if self._new_cfg is not None:
                    self._swap_config()
                nxt = self._next()
                if nxt is None:
                    break
                if nxt is False:
                    self._maybe_stats()
                    continue
                assert isinstance(nxt, tuple)
                frame, verdict, reason = nxt
                del nxt
                self._emit(frame, verdict, reason)
                del frame
                self._maybe_stats()
        except Exception as exc:
            log.exception("output thread failed")
            # not the detector's fault: say what failed (e.g. the masker on this frame)
            self._fail(f"output failed: {type(exc).__name__}: {exc}", "the output stage failed")
        finally:
            self._events.end_all(time.time())
            self._maybe_stats(force=True)
            self.done.set()

    def _emit(self, frame: Frame, verdict: str, reason: str) -> None:
        boxes = self.tracker.boxes_at(frame.index, frame.pts)
        faces = [b for b in boxes if b.label == "face"]
        masked: MaskedFrame | None
        if self._privacy:
            masked = self.masker.obscure(frame, "privacy")
        elif verdict == "obscure":
            if self.cfg.gate.on_missing == "drop":
                self.frames_dropped += 1
                masked = None
            else:
                self.frames_obscured += 1
                masked = self.masker.obscure(frame, reason)
        else:
            regions = self.masker.regions(
                self._track_regions(boxes, frame), frame.width, frame.height
            )
            masked = self.masker.mask(frame, regions)
        self.tracker.prune(frame.index, frame.pts)
        self.gate.forget_before(frame.index)
        self.faces = len(faces)
        when = time.time() - (time.monotonic() - frame.captured)
        active = self._any_event()
        self._events.step(boxes, when)
        if self.recorder is not None and self._any_event() != active:
            self.recorder.set_event(not active)
        if masked is None:
            return
        self.frames_total += 1
        self._stats_frames += 1
        if self.recorder is not None and self.recording:
            self.recorder.submit(masked, block=not self.source.live)
        for listener in self.listeners:
            try:
                listener.on_frame(masked, len(faces))
            except Exception:
                log.exception("listener failed", extra=fields(listener=type(listener).__name__))
        writes = self.recorder is not None and self.recording
        if not self._ready_sent and (not writes or self.cfg.recording.mode == "events"):
            self._ready()
        self._progress()

    def _track_regions(self, boxes: list[TrackedBox], frame: Frame) -> list[Region]:
        """Tracked boxes grown by the mask margin, carrying their track id."""
        out = []
        for b in boxes:
            part = tracked_mask_box(b.label, b.box, self.cfg.mask.people)  # None: not masked
            if part is None:
                continue
            box = grow(part, self.cfg.mask.margin, frame.width, frame.height)
            if box is not None:
                out.append(
                    Region(box, b.label, self.cfg.mask.shape, b.score, b.box, (), b.track_id)
                )
        return out

    def _written(self, frame: MaskedFrame, n: int) -> None:
        """Recorder thread: frame ``n`` is in a file."""
        self._latency_ms.append((time.monotonic() - frame.captured) * 1e3)
        if self._on_written_ext is not None:
            self._on_written_ext(frame, n)
        if not self._ready_sent:
            self._ready()

    def _ready(self) -> None:
        self._ready_sent = True
        if self._on_ready is not None:
            self._on_ready()

    def _progress(self) -> None:
        """A protected frame left the pipeline: feed the watchdog if every stage is alive.

        A hung detector or a hung recorder stops the pings even though the gate keeps frames
        flowing (obscured) and live sources keep dropping into a full recorder queue. A recorder
        that is retrying a full disk is alive.
        """
        now = time.monotonic()
        window = max(2.0, 4 * self.gate.deadline_s)
        if now - self._last_detect_done > window:
            return
        rec = self.recorder
        if rec is not None and self.recording and now - rec.last_progress > window:
            return
        self._heartbeat()

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        dt = max(1e-6, now - self._stats_t)
        rec = self.recorder
        return {
            "fps": round(self._stats_frames / dt, 2),
            "detect_fps": round((self.detector_runs - self._stats_runs) / dt, 2),
            "detector_ms": round(statistics.median(self._det_ms), 1) if self._det_ms else None,
            "faces": self.faces,
            "frames_total": self.frames_total,
            "frames_obscured": self.frames_obscured,
            "frames_dropped": self.frames_dropped + (rec.frames_dropped if rec else 0),
            "detector_errors": self.detector_errors,
            "recording_bytes": rec.disk_bytes() if rec else 0,
            "recording_error": rec.error if rec else None,
            "source_state": self.capture.state,
            "recording": self.recording,
            "privacy": self._privacy,
            # the owner's key the originals are sealed to, or "off" (README, "Unmasking")
            "escrow": getattr(getattr(self.masker, "sealer", None), "fingerprint", None) or "off",
            "latency_ms": (
                round(statistics.median(self._latency_ms), 1) if self._latency_ms else None
            ),
            **self._profile_stats(),
        }

    def _profile_stats(self) -> dict[str, Any]:
        """The detection profile fitted to the board (README, "Detection profiles"); until the
        first frame sets it, the configured one. "Board overloaded" is also on when the
        detector, as measured here, is too slow for the deadline: on boards with no projection
        (x86, Jetson) that is the only sign, and on a Pi it corrects a wrong one."""
        choice = getattr(self.detector, "choice", None)
        out: dict[str, Any] = {
            "detect_profile": self.cfg.detect.schedule.profile,
            "detect_profile_reason": "",
            "board_overloaded": False,
            "projected_cpu_percent": None,
        }
        if choice is not None:
            out.update(choice.stats())
        ms = self._too_slow_ms()
        if ms is not None:
            out["board_overloaded"] = True
            measured = f"measured: a detector run takes {ms:.0f} ms, over half of gate.deadline_ms"
            out["detect_profile_reason"] = "; ".join(
                filter(None, [measured, out["detect_profile_reason"]])
            )
        return out

    def _maybe_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._stats_t < STATS_PERIOD_S:
            return
        s = self.stats()
        self._stats_t = now
        self._stats_frames = 0
        self._stats_runs = self.detector_runs
        for listener in self.listeners:
            try:
                listener.on_stats(s)
            except Exception:
                log.exception("listener failed", extra=fields(listener=type(listener).__name__))
