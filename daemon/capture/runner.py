"""The capture thread: read a source, stamp frames, retry a lost source with backoff.

A lost source never raises out of here: the state goes to ``lost`` then ``retrying`` (logged,
and published through the pipeline's stats) and the source is reopened after a wait that
doubles from ``retry_initial_s`` up to ``retry_max_s``. A file that cannot be opened the first
time is a usage error and ends the capture with ``error`` set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from daemon.capture.config import CameraConfig
from daemon.capture.sources import FileSource, Source, SourceError
from daemon.events import SourceState
from daemon.frames import Frame
from daemon.logs import fields

log = logging.getLogger(__name__)


class CaptureRunner:
    """Runs ``source`` in its own thread and hands every frame to ``deliver``.

    ``deliver(frame)`` may block (back-pressure for files) and returns False when the frame
    was not accepted. ``on_progress()`` is called after each frame and each retry step, which
    is what keeps the systemd watchdog fed while a camera is being retried. ``on_ended()``
    comes once, after ``ended`` is set, so waiting stages need not poll for it.
    """

    def __init__(
        self,
        source: Source,
        cfg: CameraConfig,
        deliver: Callable[[Frame], bool],
        *,
        on_progress: Callable[[], None] | None = None,
        on_ended: Callable[[], None] | None = None,
    ) -> None:
        self.source = source
        self.cfg = cfg
        self.deliver = deliver
        self.on_progress = on_progress or (lambda: None)
        self.on_ended = on_ended or (lambda: None)
        self.state: SourceState = "starting"
        self.error: str | None = None  # set when capture ended for good because of a problem
        self.last_error: str | None = None  # the source's latest failure; None once frames come
        self.frames = 0
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _set_state(self, state: SourceState, **kv: object) -> None:
        if state != self.state:
            self.state = state
            level = logging.INFO if state in ("ok", "ended") else logging.WARNING
            log.log(level, f"source {state}", extra=fields(source=self.source.name, **kv))

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # last line of defence: report, never take the daemon down
            log.exception("capture failed", extra=fields(source=self.source.name))
            self.error = f"capture failed: {exc}"
        finally:
            try:
                self.source.close()
            except Exception as exc:
                log.debug("closing source failed", extra=fields(error=exc))
            if self.state != "ended":
                self._set_state("ended")
            self.ended.set()
            self.on_ended()

    def _loop(self) -> None:
        backoff = self.cfg.retry_initial_s
        opened_once = False
        start = time.monotonic()
        while not self._stop.is_set():
            try:
                self.source.open()
            except SourceError as exc:
                self.last_error = str(exc)
                if isinstance(self.source, FileSource) and not opened_once:
                    self.error = str(exc)
                    log.error("cannot open source", extra=fields(error=exc))
                    return
                self._set_state("retrying", error=exc, retry_in_s=round(backoff, 1))
                self._wait(backoff)
                backoff = min(backoff * 2, self.cfg.retry_max_s)
                continue
            opened_once = True
            try:
                while not self._stop.is_set():
                    grab = self.source.read()
                    if grab is None:
                        self._set_state("ended", frames=self.frames)
                        return
                    now = time.monotonic()
                    pts = grab.pts if grab.pts is not None else now - start
                    frame = Frame(grab.image, self.frames, pts, now, grab.layout)
                    del grab
                    self.frames += 1
                    if self.state != "ok":
                        self.last_error = None
                        self._set_state("ok")
                        backoff = self.cfg.retry_initial_s
                    self.deliver(frame)
                    del frame
                    self.on_progress()
            except SourceError as exc:
                self.last_error = str(exc)
                self._set_state("lost", error=exc, retry_in_s=round(backoff, 1))
            finally:
                self.source.close()
            if not self._stop.is_set():
                self._wait(backoff)
                backoff = min(backoff * 2, self.cfg.retry_max_s)
                if not self._stop.is_set():
                    self._set_state("retrying", retry_in_s=round(backoff, 1))

    def _wait(self, seconds: float) -> None:
        """Wait for a retry, waking every second to feed the watchdog (the loop is alive)."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(1.0, left))
            self.on_progress()
