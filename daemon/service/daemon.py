"""The long-running service around one pipeline: signals, reload, exit codes, systemd.

* SIGTERM/SIGINT: stop capturing, emit the frames still held, finish the segment, exit 0.
* SIGHUP: re-read the config. An invalid one is logged with file, line and field and the
  running pipeline stays. A valid one restarts the pipeline when a section it uses changed
  (a changed ``detect`` section builds and checks the new detector first; if its model is
  wrong the old pipeline keeps running). ``logging`` changes apply in place; ``mqtt`` changes
  go to the reload hooks (the MQTT bridge).
* A model that cannot load means nothing is recorded: the error is logged and the process
  exits with :data:`EXIT_MODEL` so that systemd shows the unit failed.
* ``READY=1`` normally follows the first protected frame written. A camera that is down at
  boot is retried forever, so after :func:`camera_wait_s` of retrying the service reports
  ready anyway, with ``STATUS=waiting for camera ...``: see :meth:`Service._ready_without_camera`.

The service is also the stable control surface (``daemon.events.PipelineControls``) for
listeners such as the MQTT bridge: it outlives pipeline restarts and re-attaches listeners.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon import logs
from daemon.board import Board, read_board
from daemon.config import Config, ConfigError, load
from daemon.events import PipelineListener
from daemon.frames import MaskedFrame
from daemon.logs import fields, redact
from daemon.mask.check import checked_masker
from daemon.service.notify import Notifier, StatusListener
from daemon.state import StateStore

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_RUNTIME = 1  # the source could not be used at all (e.g. a file that does not open)
EXIT_CONFIG = 2  # invalid config at start
EXIT_MODEL = 3  # detector model missing or corrupt: nothing was recorded

PIPELINE_SECTIONS = ("camera", "detect", "track", "mask", "gate", "recording", "escrow")

CAMERA_WAIT_S = 20.0
"""How long after start a camera that is being retried may keep the service from READY.

The unit is ``Type=notify`` with ``TimeoutStartSec=120s``: without READY systemd would kill a
healthy daemon that is only waiting for its camera and restart it in a loop. systemd does not
tell a service its start timeout, so this is a constant well inside it (a first connection
attempt times out after ``camera.open_timeout_s``, 10 s by default, then retrying begins).
The environment variable ``VEILCAM_CAMERA_WAIT_S`` overrides it (tests; a drop-in for a
camera known to need longer).
"""


def camera_wait_s() -> float:
    """:data:`CAMERA_WAIT_S`, or ``VEILCAM_CAMERA_WAIT_S`` when set to a number >= 0."""
    raw = os.environ.get("VEILCAM_CAMERA_WAIT_S")
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if value >= 0:
            return value
        log.warning("ignoring VEILCAM_CAMERA_WAIT_S", extra=fields(value=raw))
    return CAMERA_WAIT_S


def _sealer(cfg: Config, fps: float) -> Any:
    """The escrow sealer, or None with escrow off. A key that no longer loads stops the start:
    escrow asked for but impossible must not become unsealed or unrecorded evidence silently."""
    if not cfg.escrow.enabled:
        return None
    from daemon.escrow.keys import KeyFileError
    from daemon.escrow.seal import Sealer

    try:
        sealer = Sealer(cfg.escrow, fps=fps, gop_s=cfg.recording.keyframe_s, crf=cfg.recording.crf)
    except KeyFileError as exc:
        raise StartError(f"escrow: {exc}", EXIT_CONFIG) from None
    log.info(
        "escrow on: masked regions are sealed to the owner's key",
        extra=fields(fingerprint=sealer.fingerprint, labels=",".join(cfg.escrow.labels)),
    )
    return sealer


class StartError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Service:
    """Runs pipelines for one camera until told to stop."""

    def __init__(
        self,
        cfg: Config,
        *,
        config_path: Path | None = None,
        source: str | None = None,
        fast: bool = False,
        on_written: Callable[[MaskedFrame, int], None] | None = None,
        notifier: Notifier | None = None,
        board: Board | None = None,
    ) -> None:
        self.cfg = cfg
        self.board = board or read_board()  # the detection profile is fitted to it
        self.config_path = config_path
        self.source_override = source
        self.fast = fast
        self._on_written_ext = on_written
        self.notifier = notifier or Notifier()
        self.state = StateStore(cfg.recording.resolved_state_file())
        self.listeners: list[PipelineListener] = [
            StatusListener(self.notifier, camera_error=self.camera_error)
        ]
        self.reload_hooks: list[Callable[[Config], None]] = []
        self.pipeline: Any = None
        self._written_total = 0
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._detector: Any = None
        self._ready = False
        self._camera_wait_s = CAMERA_WAIT_S

    # -- controls for listeners (thread-safe) -----------------------------------------------

    def set_privacy(self, on: bool) -> None:
        p = self.pipeline
        if p is not None:
            p.set_privacy(on)
        else:
            self.state.update(privacy=bool(on))

    def set_recording(self, on: bool) -> None:
        p = self.pipeline
        if p is not None:
            p.set_recording(on)
        else:
            self.state.update(recording=bool(on))

    @property
    def privacy(self) -> bool:
        return self.state.switches.privacy

    @property
    def recording(self) -> bool:
        return self.state.switches.recording and self.cfg.recording.enabled

    def add_listener(self, listener: PipelineListener) -> None:
        self.listeners.append(listener)
        if self.pipeline is not None:
            self.pipeline.add_listener(listener)

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    # -- building ----------------------------------------------------------------------------

    def _build_detector(self, cfg: Config) -> Any:
        from daemon.detect import ModelError
        from daemon.detect.combined import build_frame_detector

        try:
            det = build_frame_detector(cfg.detect)  # faces, and people when enabled
            import numpy as np

            det.detect(np.zeros((64, 64, 3), np.uint8))  # load and warm up before any frame
        except ModelError as exc:
            raise StartError(
                f"detector model unusable, recording nothing: {exc}", EXIT_MODEL
            ) from None
        return det

    def _build_pipeline(self, cfg: Config, detector: Any) -> Any:
        from daemon.capture.sources import SourceError, make_source
        from daemon.mask.masker import Masker
        from daemon.pipeline import Pipeline, source_fps

        camera = cfg.camera
        if self.fast:
            camera = camera.model_copy(update={"realtime": False, "loop": False})
            cfg = cfg.model_copy(update={"camera": camera})
        try:
            source = make_source(camera, self.source_override)
        except SourceError as exc:
            raise StartError(str(exc), EXIT_RUNTIME) from None
        p = Pipeline(
            cfg,
            source,
            detector,
            Masker(cfg.mask, sealer=_sealer(cfg, source_fps(cfg, source))),
            fast=self.fast,
            state=self.state,
            on_written=self._written,
            heartbeat=self.notifier.progress,
            on_ready=self._on_ready,
        )
        for listener in self.listeners:
            p.add_listener(listener)
        self._fit_profile(cfg, detector, source)
        return p

    def _fit_profile(self, cfg: Config, detector: Any, source: Any) -> None:
        """Fit the detection profile to the board and the camera at the next frame's size
        (the size is known only once the camera delivers). Said in the log and the stats."""
        from daemon.capture.sources import Picamera2Source
        from daemon.detect.profiles import Camera, announce, choose
        from daemon.media.encode import choose_codec
        from daemon.pipeline import source_fps

        board, detect, deadline = self.board, cfg.detect, cfg.gate.deadline_ms
        fps = source_fps(cfg, source)
        rec = cfg.recording
        hw = rec.enabled and choose_codec(rec.encoder) == "h264_v4l2m2m"

        def chooser(width: int, height: int) -> tuple[Any, Any]:
            # a Pi camera's frames arrive raw; the stream is open by now, its decoder known
            raw = isinstance(source, Picamera2Source) or getattr(source, "hw_decode", False)
            cam = Camera(width, height, fps, decode=not raw, hw_encode=hw)
            out, choice = choose(detect, board, cam, deadline)
            announce(choice)
            return out, choice

        if hasattr(detector, "fit_with"):
            detector.fit_with(chooser)

    def camera_error(self) -> str | None:
        """The source's latest error, without URL credentials (``STATUS=`` is world-readable)."""
        p = self.pipeline
        err = p.capture.last_error if p is not None else None
        return redact(err) if err else None

    def _written(self, frame: MaskedFrame, n: int) -> None:
        if self._on_written_ext is not None:
            self._on_written_ext(frame, self._written_total)
        self._written_total += 1

    def _on_ready(self) -> None:
        if not self._ready:
            self._ready = True
            self.notifier.ready()

    def _ready_without_camera(self, since: float) -> None:
        """READY=1 for a healthy daemon whose camera has been retried since it started.

        Called from the main loop. Once :func:`camera_wait_s` has passed since ``since`` with
        the source ``lost`` or ``retrying`` and nothing written yet, the unit becomes active:
        the watchdog, fed by the retry loop, guards it from then on, and ``systemctl status``
        says why nothing is recorded. The first frame written later sends no second READY.
        """
        if self._ready or self.pipeline is None:
            return
        state = self.pipeline.capture.state
        if state not in ("lost", "retrying") or time.monotonic() - since < self._camera_wait_s:
            return
        self._ready = True
        why = self.camera_error() or f"source {state}"
        log.warning(
            "ready without a camera: recording nothing until it answers",
            extra=fields(source=redact(self.pipeline.source.name), error=why),
        )
        self.notifier.ready(f"waiting for camera, source {state}: {why}")

    # -- running -----------------------------------------------------------------------------

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
        signal.signal(signal.SIGINT, lambda *_: self.request_stop())
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    def run(self, duration_s: float | None = None) -> int:
        """Run until stopped, the source ends, ``duration_s`` passes or the detector fails."""
        try:
            self._detector = self._build_detector(self.cfg)
            self.pipeline = self._build_pipeline(self.cfg, self._detector)
        except StartError as exc:
            log.critical(str(exc))
            return exc.code
        self.pipeline.start()
        board = self.board
        log.info(
            "running",
            extra=fields(
                camera=self.cfg.camera.name,
                source=self.pipeline.source.name,
                recordings=Path(self.cfg.recording.path) / self.cfg.camera.name,
                board=board.kind,
                board_model=board.model or None,
            ),
        )
        started = time.monotonic()
        self._camera_wait_s = camera_wait_s()
        deadline = None if duration_s is None else started + duration_s
        code = EXIT_OK
        while True:
            p = self.pipeline
            if self._stop.is_set():
                break
            self._ready_without_camera(started)
            if deadline is not None and time.monotonic() >= deadline:
                break
            if p.done.is_set():
                if p.fatal:
                    log.critical("stopped", extra=fields(reason=p.fatal))
                    code = EXIT_MODEL if p.fatal.startswith("detector model") else EXIT_RUNTIME
                elif p.capture.error:
                    log.error("source failed", extra=fields(error=p.capture.error))
                    code = EXIT_RUNTIME
                break
            if self._reload.is_set():
                self._reload.clear()
                self._do_reload()
                continue
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            self._stop.wait(wait)
        self.notifier.stopping()
        self.pipeline.stop()
        s = self.pipeline.stats()
        log.info(
            "stopped",
            extra=fields(
                frames=s["frames_total"],
                obscured=s["frames_obscured"],
                dropped=s["frames_dropped"],
                written=self._written_total,
            ),
        )
        return code

    def _do_reload(self) -> None:
        if self.config_path is None:
            log.warning("reload ignored: running without a config file")
            return
        self.notifier.reloading()
        try:
            self._reload_from_file()
        except Exception as exc:  # whatever went wrong, the running config stays
            log.exception("reload failed, keeping the running config", extra=fields(error=exc))
        finally:
            self.notifier.reloaded()

    def _reload_from_file(self) -> None:
        """Load, then apply: the pipeline first, so that hooks and logging change only if the
        pipeline took the new config (a failed apply leaves everything on the old one)."""
        assert self.config_path is not None
        try:
            new = load(self.config_path)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("config rejected, keeping the running one", extra=fields(problem=problem))
            return
        old = self.cfg
        changed = [s for s in Config.model_fields if getattr(new, s) != getattr(old, s)]
        if not changed:
            log.info("config unchanged")
            return
        if any(s in PIPELINE_SECTIONS for s in changed) and not self._restart(new, changed):
            return
        if "logging" in changed:
            logs.setup(new.logging.level)
        for hook in self.reload_hooks:
            try:
                hook(new)
            except Exception:
                log.exception("reload hook failed")
        self.cfg = new
        log.info("config reloaded", extra=fields(changed=",".join(changed)))

    def _restart(self, new: Config, changed: list[str]) -> bool:
        """Apply ``new``: in place when only live sections changed, else swap in a new pipeline.

        False (the old config kept running) if the new pipeline cannot be built or started.
        """
        if set(changed) & set(PIPELINE_SECTIONS) <= self.pipeline.LIVE_SECTIONS:
            try:
                applied = self.pipeline.apply(new)
            except Exception as exc:
                applied = False
                log.error("config not applied, keeping the running one", extra=fields(error=exc))
            return bool(applied)
        detector = self._detector
        if "detect" in changed:
            try:
                detector = self._build_detector(new)
            except StartError as exc:
                log.error(
                    "new detector rejected, keeping the running pipeline", extra=fields(error=exc)
                )
                return False
        try:
            checked_masker(new.mask)
            nxt = self._build_pipeline(new, detector)
        except Exception as exc:  # StartError, or a masker that cannot mask a test frame
            log.error("new pipeline rejected, keeping the running one", extra=fields(error=exc))
            return False
        self.pipeline.stop()
        try:
            nxt.start()  # the recorder (its directory) first: nothing else runs if that fails
        except Exception as exc:
            log.error(
                "new pipeline did not start, going back to the running config",
                extra=fields(error=exc),
            )
            self.pipeline = self._build_pipeline(self.cfg, self._detector)
            self.pipeline.start()
            return False
        self.pipeline = nxt
        self._detector = detector
        return True
