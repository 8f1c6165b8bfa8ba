"""Commands from Home Assistant: strict parsing, and nothing a payload can do to crash us.

Accepted (everything else is rejected, logged with its topic, and ignored):

* ``<base>/privacy/set``   ``ON`` | ``OFF``
* ``<base>/recording/set`` ``ON`` | ``OFF``
* ``<base>/snapshot_now/set`` ``PRESS``
* ``<prefix>/status`` (Home Assistant's birth/will) ``online`` | ``offline``

Payloads are bytes of at most :data:`MAX_PAYLOAD`, UTF-8, compared exactly (surrounding
whitespace aside). Retained commands are refused by the bridge: they would be re-applied on
every reconnect. Rejections are logged at most :data:`LOG_BURST` per :data:`LOG_WINDOW_S`
seconds so a flood of junk cannot flood the journal; the suppressed ones are counted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

from daemon.logs import fields
from daemon.mqtt.discovery import COMMANDS, OFF, ON, PRESS, SWITCHES, Topics

log = logging.getLogger(__name__)

MAX_PAYLOAD = 64
LOG_BURST = 20
LOG_WINDOW_S = 10.0

Name = Literal["privacy", "recording", "snapshot_now", "ha_status"]


@dataclass(frozen=True)
class Command:
    name: Name
    value: bool  # switches: on/off; button: True; ha_status: online


class Rejected(Exception):
    """Why a message is not a command."""


def _text(payload: bytes) -> str:
    if len(payload) > MAX_PAYLOAD:
        raise Rejected(f"payload too large ({len(payload)} bytes > {MAX_PAYLOAD})")
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise Rejected("payload is not UTF-8") from None


def parse(topic: str, payload: bytes, topics: Topics, status_topic: str) -> Command:
    """The command a message carries; raises :class:`Rejected` saying why not."""
    if topic == status_topic:
        text = _text(payload)
        if text not in ("online", "offline"):
            raise Rejected("expected online or offline")
        return Command("ha_status", text == "online")
    prefix = topics.base + "/"
    if not topic.startswith(prefix) or not topic.endswith("/set"):
        raise Rejected("not a command topic")
    name = topic[len(prefix) : -len("/set")]
    if name not in COMMANDS:
        raise Rejected("unknown command")
    text = _text(payload)
    if name in SWITCHES:
        if text not in (ON, OFF):
            raise Rejected(f"expected {ON} or {OFF}")
        return Command(name, text == ON)  # type: ignore[arg-type]
    if text != PRESS:
        raise Rejected(f"expected {PRESS}")
    return Command(name, True)  # type: ignore[arg-type]


class RejectLog:
    """Logs rejected messages with their topic, rate-limited; counts every one."""

    def __init__(self, burst: int = LOG_BURST, window_s: float = LOG_WINDOW_S) -> None:
        self.burst = burst
        self.window_s = window_s
        self.rejected = 0
        self._window_start = -1e18
        self._in_window = 0
        self._suppressed = 0

    def __call__(self, topic: str, why: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now - self._window_start >= self.window_s:
            self._window_start, self._in_window = now, 0
        if self._in_window >= self.burst:
            self._suppressed += 1
        else:
            self._in_window += 1
            extra: dict[str, object] = {"topic": topic[:200], "reason": why}
            if self._suppressed:
                extra["suppressed_before"] = self._suppressed
                self._suppressed = 0
            log.warning("MQTT command ignored", extra=fields(**extra))
        self.rejected += 1  # counted last: once it shows, the log line is out
