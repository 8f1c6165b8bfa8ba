"""Write masked frames into time-named fragmented-MP4 segments, in their own thread.

Layout: ``<recording.path>/<camera>/YYYY-MM-DD/<camera>_YYYY-MM-DD_HH-MM-SS.mp4`` (local start
time). Modes: ``continuous``, or ``events`` where a pre-roll of *masked* frames is kept in memory
and a segment is written from ``pre_roll_s`` before an event until ``post_roll_s`` after it.

A failing disk never stops the daemon: on a write error the segment is cut back to its last
complete fragment (see ``daemon.media.encode``), retention frees space, frames are dropped and
counted while the disk is full, and a new segment is tried after a pause.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.escrow.sidecar import EscrowRecording, sidecar_path
from daemon.frames import MaskedFrame, require_masked
from daemon.logs import fields
from daemon.media.encode import EncodeError, H264Writer
from daemon.record import retention
from daemon.record.config import RecordingConfig

if TYPE_CHECKING:
    from daemon.escrow.seal import Sealer

log = logging.getLogger(__name__)

RETRY_AFTER_ERROR_S = 5.0
RETENTION_EVERY_S = 60.0
FREE_AFTER_FULL_BYTES = 64 * 1024 * 1024
PRE_ROLL_BUDGET_BYTES = 96 * 1024 * 1024  # beyond this the pre-roll keeps every other frame
_STOP = object()


def wall_time(frame: MaskedFrame) -> float:
    """Unix time at which ``frame`` was captured."""
    return time.time() - (time.monotonic() - frame.captured)


class Recorder:
    """Owns the encoder thread. ``submit`` hands it masked frames in order.

    ``on_written(frame, n)`` is called from the encoder thread after frame ``n`` (0-based count
    of frames written across all segments) is in a file.
    """

    def __init__(
        self,
        cfg: RecordingConfig,
        camera: str,
        fps: float,
        *,
        on_written: Callable[[MaskedFrame, int], None] | None = None,
        queue_size: int = 2,
        sealer: Sealer | None = None,
    ) -> None:
        self.cfg = cfg
        self.camera = camera
        self.fps = fps
        self.camera_dir = Path(cfg.path) / camera
        self.on_written = on_written or (lambda f, n: None)
        self.enabled = cfg.enabled
        self.frames_written = 0
        self.frames_dropped = 0  # not written because of disk errors or a full queue
        self.segments: list[Path] = []  # every segment this recorder opened
        self.cut_segments: list[Path] = []  # segments cut back to their last fragment
        self.error: str | None = None  # the last disk problem, None when healthy
        self._writer: H264Writer | None = None
        self._seg_start_pts = 0.0
        self._seg_size: tuple[int, int] | None = None
        self._retry_at = 0.0
        self._last_retention = 0.0
        self._event_active = False
        self._post_roll_until: float | None = None  # pts until which an ended event records
        self._pre_roll: deque[MaskedFrame] = deque()
        self._q: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self.bytes_on_disk = 0
        self.last_progress = time.monotonic()  # the thread handled something (watchdog)
        self._last_check = time.monotonic()  # the open segment's file still exists
        self.retry_after_error_s = RETRY_AFTER_ERROR_S
        # escrow: sealed regions go to a sidecar beside each segment
        self._escrow = EscrowRecording(sealer) if sealer is not None else None

    # -- called from the pipeline's output thread ----------------------------------------

    def start(self) -> None:
        self.camera_dir.mkdir(parents=True, exist_ok=True)
        self.bytes_on_disk = retention.disk_usage(self.camera_dir)
        self._thread.start()

    def disk_bytes(self) -> int:
        """Bytes of recordings on disk, the open segment included: Home Assistant's "Recording
        disk use" grows while the first segment is written, not only when one closes."""
        w = self._writer
        try:
            open_bytes = w.path.stat().st_size if w is not None else 0
        except OSError:  # closed or removed in between: the next figure will say
            open_bytes = 0
        return self.bytes_on_disk + open_bytes

    def submit(self, frame: MaskedFrame, *, block: bool = True) -> bool:
        """Queue a frame for writing; with ``block=False`` a full queue drops it (counted)."""
        frame = require_masked(frame)
        try:
            self._q.put(("frame", frame), block=block, timeout=None)
        except queue.Full:
            self.frames_dropped += 1
            return False
        return True

    def set_event(self, active: bool) -> None:
        """Events mode: a face-present event started (True) or ended (False)."""
        self._q.put(("event", active))

    def set_enabled(self, on: bool) -> None:
        self._q.put(("enabled", on))

    def stop(self, timeout: float | None = 30.0) -> None:
        """Write what is queued, finish the segment cleanly and end the thread."""
        if self._thread.is_alive():
            self._q.put(_STOP)
            self._thread.join(timeout)

    # -- encoder thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                item = self._q.get(timeout=1.0)
            except queue.Empty:
                self.last_progress = time.monotonic()  # idle is alive
                if self.last_progress - self._last_retention > RETENTION_EVERY_S:
                    self._retention(keep=self._writer.path if self._writer else None)
                continue
            self.last_progress = time.monotonic()
            if item is _STOP:
                break
            kind, value = item  # type: ignore[misc]
            try:
                if kind == "frame":
                    self._handle(value)
                elif kind == "event":
                    self._event(bool(value))
                elif kind == "enabled":
                    self.enabled = bool(value)
                    if not self.enabled:
                        self._close_segment()
                        self._pre_roll.clear()
            except Exception:  # the recorder must outlive any single bad frame or file
                log.exception("recorder step failed")
                self._close_segment()
            del item
        self._close_segment()
        self._pre_roll.clear()

    def _event(self, active: bool) -> None:
        self._event_active = active
        if active:
            self._post_roll_until = None
        elif self.cfg.mode == "events":
            # the end is decided on the next frame's pts (frames carry the clock)
            self._post_roll_until = -1.0

    def _handle(self, frame: MaskedFrame) -> None:
        if self._escrow is not None:
            self._escrow.saw(frame)
        if not self.enabled:
            return
        if self.cfg.mode == "continuous":
            self._write(frame)
            return
        # events mode
        if self._post_roll_until == -1.0:
            self._post_roll_until = frame.pts + self.cfg.post_roll_s
        recording = self._event_active or (
            self._post_roll_until is not None and frame.pts <= self._post_roll_until
        )
        if recording:
            while self._pre_roll:
                self._write(self._pre_roll.popleft())
            self._write(frame)
            return
        if self._writer is not None:
            self._close_segment()
            self._post_roll_until = None
        self._pre_roll.append(frame)
        while self._pre_roll and frame.pts - self._pre_roll[0].pts > self.cfg.pre_roll_s:
            self._pre_roll.popleft()
        if len(self._pre_roll) * frame.image.nbytes > PRE_ROLL_BUDGET_BYTES:
            # keep the whole pre-roll time span in bounded memory: thin it out instead
            self._pre_roll = deque(list(self._pre_roll)[::2])

    def _segment_path(self, frame: MaskedFrame) -> Path:
        start = datetime.fromtimestamp(wall_time(frame))
        day = self.camera_dir / start.strftime("%Y-%m-%d")
        stem = f"{self.camera}_{start.strftime('%Y-%m-%d_%H-%M-%S')}"
        p = day / f"{stem}.mp4"
        n = 1
        while p.exists():
            p = day / f"{stem}_{n}.mp4"
            n += 1
        return p

    def _open_segment(self, frame: MaskedFrame) -> bool:
        now = time.monotonic()
        if now < self._retry_at:
            return False
        path = self._segment_path(frame)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = H264Writer(
                path,
                frame.width,
                frame.height,
                self.fps,
                codec=self.cfg.encoder,
                crf=self.cfg.crf,
                keyframe_s=self.cfg.keyframe_s,
            )
        except (EncodeError, OSError) as exc:
            self._disk_problem(exc, path)
            return False
        if self._escrow is not None and not self._open_sidecar(path):
            return False
        self.segments.append(path)
        self._seg_start_pts = frame.pts
        self._seg_size = (frame.width, frame.height)
        if self.error is not None:
            log.info("recording resumed", extra=fields(path=path))
            self.error = None
        log.info("segment started", extra=fields(path=path, codec=self._writer.codec))
        self._retention(keep=path)
        return True

    def _open_sidecar(self, path: Path) -> bool:
        """The segment's ``.sealed`` file under a fresh content key. If it cannot be made, the
        segment is not started either: escrow on means no segment without its seal."""
        assert self._escrow is not None and self._writer is not None
        try:
            self._escrow.open(path)
        except OSError as exc:
            w, self._writer = self._writer, None
            with contextlib.suppress(EncodeError, OSError):
                w.close()
            with contextlib.suppress(OSError):
                path.unlink()
            self._disk_problem(exc, path)
            return False
        return True

    def _seal(self, frame: MaskedFrame) -> None:
        if self._escrow is not None and self._writer is not None:
            w = self._writer
            self._escrow.after_frame(frame, w.frames_written - 1, w.fragments)

    def _close_sidecar(self) -> None:
        if self._escrow is not None:
            self._escrow.close()

    def _write(self, frame: MaskedFrame) -> None:
        if self._writer is not None and (
            frame.pts - self._seg_start_pts >= self.cfg.segment_s
            or (frame.width, frame.height) != self._seg_size
        ):
            self._close_segment()
        if self._writer is None and not self._open_segment(frame):
            self.frames_dropped += 1
            return
        assert self._writer is not None
        try:
            self._writer.write(frame)
        except EncodeError as exc:
            path = self._writer.path
            self._writer = None  # the writer already cut the file back to its last fragment
            self._close_sidecar()
            self.cut_segments.append(path)
            self.frames_dropped += 1
            self._disk_problem(exc, path)
            return
        self._seal(frame)
        n = self.frames_written
        self.frames_written += 1
        try:
            self.on_written(frame, n)
        except Exception:
            log.exception("on_written callback failed")
        if time.monotonic() - self._last_check > 1.0:
            self._last_check = time.monotonic()
            if not self._writer.path.exists():
                self._segment_removed()
                return
        if time.monotonic() - self._last_retention > RETENTION_EVERY_S:
            self._retention(keep=self._writer.path)

    def _disk_problem(self, exc: Exception, path: Path) -> None:
        full = isinstance(exc, EncodeError) and exc.disk_full
        self.error = f"disk full: {path.parent}" if full else f"{exc}"
        log.error(
            "recording failed, retrying" if not full else "disk full, freeing space",
            extra=fields(path=path, error=exc, retry_in_s=self.retry_after_error_s),
        )
        self._retry_at = time.monotonic() + self.retry_after_error_s
        if full:
            # keep the segment just cut back: what it holds up to its last fragment stays
            try:
                total = shutil.disk_usage(self.camera_dir).total
            except OSError:
                total = FREE_AFTER_FULL_BYTES * 10
            self._retention(keep=path, free=min(FREE_AFTER_FULL_BYTES, total // 10))

    def _retention(self, keep: Path | None, free: int = 0) -> None:
        self._last_retention = time.monotonic()
        try:
            retention.enforce(self.camera_dir, self.cfg, keep=keep, free_bytes_needed=free)
            self.bytes_on_disk = retention.disk_usage(self.camera_dir)
        except OSError as exc:
            log.error("retention failed", extra=fields(error=exc))

    def _segment_removed(self) -> None:
        """The open segment's file (or its whole directory) was deleted under us.

        Its frames still live in the unlinked file the encoder holds open: that file is finished
        and copied back to its path in the recreated directory (fragmented MP4, so it plays), and
        the next frame starts a new segment. Logged as a problem, never as "segment finished".
        """
        w, self._writer = self._writer, None
        assert w is not None
        path = w.path
        sealed = sidecar_path(path)
        sealed_src = _open_deleted(sealed) if self._escrow is not None else None
        self._close_sidecar()  # finished (END record) in the unlinked file ``sealed_src`` reads
        self.error = f"recording removed while being written: {path}"
        log.warning(
            "open segment deleted, starting a new one",
            extra=fields(path=path, frames=w.frames_written),
        )
        src = _open_deleted(path)
        with contextlib.suppress(EncodeError, OSError):
            w.close()  # finishes the unlinked file, which ``src`` still reads
        if src is None:
            log.error("deleted segment could not be recovered", extra=fields(path=path))
            if sealed_src is not None:
                os.close(sealed_src)  # no video to go beside
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with os.fdopen(src, "rb") as fin, open(path, "xb") as fout:
                shutil.copyfileobj(fin, fout)
            log.warning("deleted segment recovered", extra=fields(path=path))
        except OSError as exc:
            log.error("deleted segment could not be recovered", extra=fields(path=path, error=exc))
        if sealed_src is not None:  # the escrow sidecar comes back beside its segment
            try:
                with os.fdopen(sealed_src, "rb") as fin, open(sealed, "xb") as fout:
                    shutil.copyfileobj(fin, fout)
            except OSError as exc:
                log.error("deleted sealed file not recovered", extra=fields(path=sealed, error=exc))
        with contextlib.suppress(OSError):
            self.bytes_on_disk = retention.disk_usage(self.camera_dir)

    def _close_segment(self) -> None:
        w, self._writer = self._writer, None
        self._close_sidecar()
        if w is None:
            return
        try:
            w.close()
            if not w.path.exists():
                self.error = f"recording removed while being written: {w.path}"
                log.warning("segment deleted before it was finished", extra=fields(path=w.path))
                return
            log.info("segment finished", extra=fields(path=w.path, frames=w.frames_written))
        except EncodeError as exc:
            self._disk_problem(exc, w.path)
        with contextlib.suppress(OSError):
            self.bytes_on_disk = retention.disk_usage(self.camera_dir)


def _open_deleted(path: Path) -> int | None:
    """A read descriptor on the unlinked file this process still has open as ``path``."""
    want = f"{os.path.abspath(path)} (deleted)"
    try:
        for name in os.listdir("/proc/self/fd"):
            link = f"/proc/self/fd/{name}"
            with contextlib.suppress(OSError):
                if os.readlink(link) == want:
                    return os.open(link, os.O_RDONLY)
    except OSError:
        pass
    return None
