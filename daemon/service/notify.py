"""systemd notifications: READY, STATUS, WATCHDOG, RELOADING, STOPPING.

``WATCHDOG=1`` is sent only from :meth:`Notifier.progress`, which the pipeline calls when a
protected frame leaves it with every stage alive. There is no timer thread: a stalled pipeline
stops the pings and systemd restarts the service after ``WatchdogSec``.

Outside systemd (no ``NOTIFY_SOCKET``) every call is a cheap no-op.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from daemon.logs import fields

log = logging.getLogger(__name__)


def _sd_notify(state: str) -> bool:
    try:
        from systemd import daemon as sd
    except ImportError:
        return _fallback_notify(state)
    return bool(sd.notify(state))


def _fallback_notify(state: str) -> bool:
    """The sd_notify datagram by hand, where systemd-python is missing."""
    import socket

    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(state.encode(), addr)
    return True


class Notifier:
    """What the daemon tells systemd. Thread-safe; calls are cheap when not under systemd."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self.watchdog_s = self._watchdog_interval()
        self._lock = threading.Lock()
        self._last_ping = 0.0
        self.pings = 0

    @staticmethod
    def _watchdog_interval() -> float | None:
        """Half of WATCHDOG_USEC (as sd_watchdog_enabled advises), None when not asked for."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return max(0.05, int(usec) / 2e6)
        except ValueError:
            return None

    def send(self, state: str) -> None:
        if not self.enabled:
            return
        try:
            _sd_notify(state)
        except OSError as exc:
            log.warning("sd_notify failed", extra=fields(error=exc))

    def ready(self, waiting: str | None = None) -> None:
        """READY=1: normally the first protected frame is written; ``waiting`` says otherwise.

        ``waiting`` (why nothing is recorded yet) goes out in the same datagram as ``STATUS=``,
        so ``systemctl status`` never shows an active unit without the reason.
        """
        if waiting is None:
            log.info("ready: first protected frame written")
            self.send("READY=1")
        else:
            self.send(f"READY=1\nSTATUS={waiting}")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def reloading(self) -> None:
        # MONOTONIC_USEC is required by Type=notify-reload; harmless for Type=notify
        self.send(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def reloaded(self) -> None:
        self.send("READY=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def progress(self) -> None:
        """Pipeline progress: ping the watchdog at most every half interval."""
        if self.watchdog_s is None or not self.enabled:
            return
        now = time.monotonic()
        with self._lock:
            if now - self._last_ping < self.watchdog_s / 2:
                return
            self._last_ping = now
            self.pings += 1
        self.send("WATCHDOG=1")


class StatusListener:
    """A pipeline listener that mirrors the stats into ``STATUS=``.

    While the source is ``lost`` or ``retrying`` the status leads with ``waiting for camera``
    and the source's last error (``camera_error()``): that is why nothing is recorded.
    """

    def __init__(
        self, notifier: Notifier, camera_error: Callable[[], str | None] | None = None
    ) -> None:
        self.notifier = notifier
        self.camera_error = camera_error or (lambda: None)

    def on_frame(self, frame: Any, faces: int) -> None:
        pass

    def on_event(self, event: dict[str, Any]) -> None:
        pass

    def on_stats(self, stats: dict[str, Any]) -> None:
        parts = [f"{stats['fps']:.1f} fps", f"{stats['faces']} faces"]
        if stats.get("detector_ms") is not None:
            parts.append(f"detector {stats['detector_ms']:.0f} ms")
        state = stats.get("source_state")
        if state in ("lost", "retrying"):
            why = self.camera_error()
            parts.insert(0, f"waiting for camera, source {state}" + (f": {why}" if why else ""))
        elif state != "ok":
            parts.append(f"source {state}")
        profile = stats.get("detect_profile")
        if profile and profile != "full":  # protection below full is said, never silent
            parts.append(f"profile {profile}")
        if stats.get("board_overloaded"):
            parts.append("BOARD OVERLOADED")
        if stats.get("frames_obscured"):
            parts.append(f"{stats['frames_obscured']} obscured")
        if stats.get("privacy"):
            parts.append("privacy on")
        if not stats.get("recording"):
            parts.append("recording off")
        if stats.get("recording_error"):
            parts.append(str(stats["recording_error"]))
        self.notifier.status(", ".join(parts))
