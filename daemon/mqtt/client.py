"""The broker connection: TLS and login, last will, reconnect with backoff, a bounded event queue.

paho-mqtt's network thread (``loop_start``) connects and reconnects on its own, waiting
``retry_initial_s`` doubling up to ``retry_max_s``; a broker that is down at start is retried
the same way. ``<base>/availability`` is ``online`` (retained) once connected and ``offline``
as the last will, so a killed daemon or a pulled plug shows as unavailable in Home Assistant.

Events go through :meth:`MQTTLink.send_event`: a bounded deque drained by one sender thread
that hands paho one event at a time and waits for its PUBACK (QoS 1). One in flight means the
order is kept across reconnects (paho re-sends the unacknowledged one first) and nothing is
delivered twice by us. While the broker is away, events wait in the deque; when it is full the
oldest waiting event is dropped and counted in :attr:`MQTTLink.events_dropped`.

Everything else (states, snapshots, discovery) is "latest value wins": published only while
connected and re-published by the ``on_connect`` hook, never queued.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from daemon.logs import fields
from daemon.mqtt.config import MQTTConfig

log = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"


class LinkSetupError(Exception):
    """The connection cannot even be attempted (unreadable password file, bad TLS files)."""


@dataclass(frozen=True)
class Identity:
    """Who we are on the broker."""

    client_id: str
    base: str  # base topic, e.g. veilcam/porch

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"


def read_password(path: Path) -> str:
    """The password file's content without its trailing newline (never logged)."""
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise LinkSetupError(f"{path}: cannot read the MQTT password file: {exc}") from None


class MQTTLink:
    """One connection to the broker, kept up until :meth:`stop`. Thread-safe."""

    def __init__(
        self,
        cfg: MQTTConfig,
        ident: Identity,
        *,
        on_connect: Callable[[], None] | None = None,
        on_message: Callable[[str, bytes, bool], None] | None = None,
        subscriptions: tuple[str, ...] = (),
    ) -> None:
        self.cfg = cfg
        self.ident = ident
        self._hook_connect = on_connect
        self._hook_message = on_message
        self.subscriptions = subscriptions
        self._cond = threading.Condition()
        self._queue: deque[tuple[str, bytes]] = deque()
        self._acked: set[int] = set()
        self._current: tuple[str, bytes] | None = None  # the event paho is delivering
        self._stopping = False
        self.connected = threading.Event()
        self.events_dropped = 0
        self.events_sent = 0
        self.connects = 0
        self._client = self._make_client()
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-events", daemon=True)

    # -- setup -------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        cfg = self.cfg
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.ident.client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        if cfg.username is not None:
            pw = read_password(cfg.password_file) if cfg.password_file is not None else None
            c.username_pw_set(cfg.username, pw)
        if cfg.tls is not None:
            t = cfg.tls
            try:
                c.tls_set(
                    ca_certs=str(t.ca_file),
                    certfile=str(t.cert_file) if t.cert_file else None,
                    keyfile=str(t.key_file) if t.key_file else None,
                    cert_reqs=ssl.CERT_REQUIRED,
                    tls_version=ssl.PROTOCOL_TLS_CLIENT,
                )
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise LinkSetupError(f"MQTT TLS files unusable: {exc}") from None
            c.tls_insecure_set(t.insecure)
        c.will_set(self.ident.availability, OFFLINE, qos=1, retain=True)
        c.reconnect_delay_set(cfg.retry_initial_s, cfg.retry_max_s)  # type: ignore[arg-type]
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        return c

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; returns at once even when the broker is down."""
        self._client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self._client.loop_start()
        self._sender.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Flush queued events for up to ``timeout`` s, say ``offline``, disconnect."""
        if self.connected.is_set():
            with self._cond:
                self._cond.wait_for(lambda: not self._queue and not self._inflight(), timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self.connected.is_set():
            info = self._client.publish(self.ident.availability, OFFLINE, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # not connected any more
                info.wait_for_publish(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        if self._sender.is_alive():
            self._sender.join(timeout)
        self.connected.clear()

    # -- publishing --------------------------------------------------------------------------

    def publish(
        self, topic: str, payload: bytes | str, *, retain: bool = False, qos: int = 0
    ) -> bool:
        """Publish now if connected; False (nothing queued) otherwise."""
        if not self.connected.is_set():
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def send_event(self, topic: str, payload: bytes) -> None:
        """Queue an event for in-order, at-least-once delivery; never blocks."""
        with self._cond:
            if len(self._queue) >= self.cfg.queue_size:
                self._queue.popleft()
                self.events_dropped += 1
                if self.events_dropped == 1 or self.events_dropped % 100 == 0:
                    log.warning(
                        "MQTT event queue full, oldest events dropped",
                        extra=fields(dropped=self.events_dropped, queue_size=self.cfg.queue_size),
                    )
            self._queue.append((topic, payload))
            self._cond.notify_all()

    def take_pending(self) -> list[bytes]:
        """Remove and return the payloads not yet acknowledged, oldest first (after
        :meth:`stop`, when the config changes; one that was in flight may come twice)."""
        with self._cond:
            waiting = [self._current] if self._current is not None else []
            out = [payload for _, payload in (*waiting, *self._queue)]
            self._queue.clear()
            self._current = None
            return out

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queue) + (1 if self._inflight() else 0)

    def subscribe_all(self) -> None:
        for topic in self.subscriptions:
            self._client.subscribe(topic, qos=1)

    # -- event sender ------------------------------------------------------------------------

    def _inflight(self) -> bool:
        return self._current is not None

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._stopping or (self._queue and self.connected.is_set())
                )
                if self._stopping:
                    return
                self._current = self._queue.popleft()
                self._acked.clear()
            topic, payload = self._current
            mid = self._client.publish(topic, payload, qos=1).mid
            # NO_CONN: paho keeps the message and sends it on reconnect; the PUBACK still comes
            with self._cond:
                self._cond.wait_for(lambda m=mid: self._stopping or m in self._acked)
                if mid not in self._acked:
                    return  # stopping: _current stays for take_pending
                self.events_sent += 1
                self._current = None
                self._cond.notify_all()

    # -- paho callbacks (network thread) -----------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            log.error(
                "MQTT broker refused the connection",
                extra=fields(host=self.cfg.host, port=self.cfg.port, reason=str(reason)),
            )
            return
        self.connects += 1
        log.info("MQTT connected", extra=fields(host=self.cfg.host, port=self.cfg.port))
        client.publish(self.ident.availability, ONLINE, qos=1, retain=True)
        self.subscribe_all()
        with self._cond:
            self.connected.set()
            self._cond.notify_all()
        if self._hook_connect is not None:
            try:
                self._hook_connect()
            except Exception:
                log.exception("MQTT on-connect hook failed")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        log.warning(
            "MQTT broker unreachable, retrying",
            extra=fields(host=self.cfg.host, port=self.cfg.port),
        )

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        with self._cond:
            was = self.connected.is_set()
            self.connected.clear()
            self._cond.notify_all()
        if was and not self._stopping:
            log.warning(
                "MQTT connection lost, reconnecting",
                extra=fields(reason=str(reason), queued=len(self._queue)),
            )

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        with self._cond:
            if self._current is not None:  # only the event sender waits for acks
                self._acked.add(mid)
                self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._hook_message is None:
            return
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            log.warning("MQTT message with a non-UTF-8 topic ignored")
            return
        try:
            self._hook_message(topic, bytes(msg.payload), bool(msg.retain))
        except Exception:  # a command must never take the network thread down
            log.exception("MQTT message handler failed", extra=fields(topic=topic))
