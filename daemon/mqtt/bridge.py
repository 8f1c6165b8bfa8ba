"""The bridge between the pipeline and Home Assistant: a ``PipelineListener`` plus commands.

The pipeline calls :meth:`MQTTBridge.on_frame` for every masked frame from its output thread,
so that method only keeps a reference to the frame and flags what is due; one worker thread
does the slow parts (JPEG encoding, state publishing, applying commands). Events go to the
link's bounded in-order queue and survive a broker outage up to ``mqtt.queue_size``.

Snapshots (camera entity, ``<base>/snapshot``, retained JPEG):

* every ``snapshot_interval_s`` and on face events (``start``/``update``; updates at most every
  ``event_snapshot_min_s``), unless privacy mode is on;
* on the "Snapshot now" button, always (in privacy mode it is the obscured frame);
* once when privacy mode takes effect, so the retained picture becomes the blank frame.

Once privacy mode is on, nothing but the blank (privacy-obscured) frame is sent, whatever was
queued before: an event snapshot or a button press waiting for the worker would otherwise send
the last frame from before the switch, after ``privacy/state ON``. A press then waits for the
first blank frame.

Events: ``start`` and ``end`` go out at once; ``update`` at most every ``event_update_min_s``
(a busy scene changed its count about twice a second, 57 updates for one event): a later one
replaces a waiting one, which goes out when due, unless the event ends first (``end`` carries
the final counts).

Only ``MaskedFrame`` objects from the pipeline's output are ever encoded (``require_masked``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from typing import Any

from daemon.config import Config
from daemon.detect.people_config import object_labels
from daemon.events import STATS_KEYS, PipelineControls
from daemon.frames import MaskedFrame, require_masked
from daemon.logs import fields
from daemon.mqtt.client import Identity, LinkSetupError, MQTTLink
from daemon.mqtt.commands import Command, Rejected, RejectLog, parse
from daemon.mqtt.config import MQTTConfig
from daemon.mqtt.discovery import OFF, ON, Topics, discovery_messages
from daemon.mqtt.snapshot import SnapshotError, encode_snapshot

log = logging.getLogger(__name__)

MAX_PENDING_COMMANDS = 64


def _onoff(v: bool) -> str:
    return ON if v else OFF


class MQTTBridge:
    """Publishes what the pipeline does and applies Home Assistant's commands."""

    def __init__(
        self,
        cfg: MQTTConfig,
        camera: str,
        controls: PipelineControls,
        labels: tuple[str, ...] = (),
    ) -> None:
        """``labels``: what the person detector reports (person, car, dog, cat). Without it the
        "Person" sensor follows the face events, as before people were detected."""
        self.cfg = cfg
        self.labels = tuple(labels)
        self._keys = ("person", *(k for k in self.labels if k != "person"))
        self.camera = camera
        self.controls = controls
        self.topics = Topics(cfg.topic_base(camera))
        self.status_topic = f"{cfg.discovery_prefix}/status"
        self.link: MQTTLink | None = None
        self.rejects = RejectLog()
        self.snapshots_sent = 0
        self.snapshot_rounds = 0  # snapshot periods elapsed (sent, or skipped in privacy mode)
        self._cond = threading.Condition()
        self._stop = False
        self._latest: MaskedFrame | None = None
        self._commands: deque[Command] = deque(maxlen=MAX_PENDING_COMMANDS)
        self._want_event_frame = False  # the next frame becomes an event snapshot
        self._event_labels: set[str] = set()  # ... also published as these labels' snapshots
        self._snap: tuple[MaskedFrame, str] | None = None  # (frame, why) waiting to be sent
        self._snap_request = False  # the button: send the latest frame
        self._blank_sent = False  # the privacy frame has replaced the retained picture
        self._last_snap_t = time.monotonic()
        self._announce = False
        self._dirty_states = False
        self._dirty_stats = False
        self._face = False
        self._on = dict.fromkeys(self._keys, False)  # binary sensor per label
        self._count = dict.fromkeys(self._keys, 0)
        # each start/update/end, in order: (label, on, count)
        self._person_changes: deque[tuple[str, bool, int]] = deque(maxlen=64)
        self._stats: dict[str, Any] = {}
        self._updates: dict[str, dict[str, Any]] = {}  # event id -> update waiting its turn
        self._last_update_t: dict[str, float] = {}  # event id -> when its last one went out
        self._last_event_snap_t = -1e9
        self._worker = threading.Thread(target=self._work, name="mqtt-bridge", daemon=True)

    # -- life cycle --------------------------------------------------------------------------

    def _make_link(self, cfg: MQTTConfig) -> MQTTLink | None:
        try:
            return MQTTLink(
                cfg,
                Identity(cfg.resolved_client_id(self.camera), self.topics.base),
                on_connect=self._on_connect,
                on_message=self._on_message,
                subscriptions=(self.topics.commands, self.status_topic),
            )
        except LinkSetupError as exc:
            log.error("MQTT disabled until the config is fixed", extra=fields(error=exc))
            return None

    def start(self) -> None:
        self.link = self._make_link(self.cfg) if self.cfg.enabled else None
        if self.link is not None:
            self.link.start()
            log.info(
                "MQTT bridge started",
                extra=fields(host=self.cfg.host, port=self.cfg.port, base=self.topics.base),
            )
        self._worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver queued events (bounded by ``timeout``), publish ``offline``, disconnect."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._worker.join(timeout)
        if self.link is not None:
            self.link.stop(timeout)

    def reconfigure(self, cfg: Config) -> None:
        """SIGHUP with a changed ``mqtt`` section: reconnect with it, keeping queued events."""
        new = cfg.mqtt
        if new == self.cfg:
            return
        old = self.link
        pending: list[bytes] = []
        if old is not None:
            old.stop(2.0)
            pending = old.take_pending()
        self.cfg = new
        self.topics = Topics(new.topic_base(self.camera))
        self.status_topic = f"{new.discovery_prefix}/status"
        self.link = self._make_link(new) if new.enabled else None
        if self.link is not None:
            for payload in pending:
                self.link.send_event(self.topics.events, payload)
            self.link.start()
        log.info("MQTT settings reloaded", extra=fields(enabled=new.enabled, base=self.topics.base))

    # -- PipelineListener (pipeline's output thread: quick, never blocks on the network) ----

    def on_frame(self, frame: MaskedFrame, faces: int) -> None:
        with self._cond:
            self._latest = frame
            notify = False
            if (faces > 0) != self._face:
                self._face = faces > 0
                self._dirty_states = notify = True
            if self._want_event_frame:
                self._want_event_frame = False
                labels, self._event_labels = sorted(self._event_labels), set()
                if not self.controls.privacy:
                    self._snap = (frame, "event:" + ",".join(labels))
                    notify = True
            if frame.reason == "privacy":
                if not self._blank_sent:
                    self._blank_sent = True
                    self._snap = (frame, "privacy")
                    notify = True
            else:
                self._blank_sent = False
            if notify:
                self._cond.notify_all()

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        eid = str(event.get("id"))
        now = time.monotonic()
        with self._cond:
            send = True
            if kind == "update":
                if now - self._last_update_t.get(eid, 0.0) < self.cfg.event_update_min_s:
                    self._updates[eid], send = event, False  # the latest waits for its turn
                else:
                    self._updates.pop(eid, None)
                    self._last_update_t[eid] = now
            else:  # start, end: at once; an update of the event still waiting is superseded
                self._updates.pop(eid, None)
                if kind == "start":
                    self._last_update_t[eid] = now
                else:
                    self._last_update_t.pop(eid, None)
            key = self._label_key(event)
            on = kind != "end"
            count = int(event.get("count", 0)) if on else 0
            if key in self._on and (on != self._on[key] or count != self._count[key]):
                self._on[key], self._count[key] = on, count
                self._person_changes.append((key, on, count))
            if send and kind in ("start", "update"):
                self._event_snapshot(now, key, force=kind == "start")
            if send:  # under the lock: a held update can never be sent after its end
                self._send_event(event)
            self._cond.notify_all()

    def _event_snapshot(self, now: float, key: str, force: bool) -> None:
        """Ask for the next frame as an event snapshot (a start always; else rate-limited)."""
        if not self.cfg.snapshot_on_events:
            return
        if force or now - self._last_event_snap_t >= self.cfg.event_snapshot_min_s:
            self._want_event_frame = True
            self._last_event_snap_t = now
            if self.labels and key in self._on:
                self._event_labels.add(key)

    def _send_event(self, event: dict[str, Any]) -> None:
        payload = json.dumps({**event, "event_type": event.get("type")}, default=str).encode()
        link = self.link
        if link is not None:
            link.send_event(self.topics.events, payload)

    def _label_key(self, event: dict[str, Any]) -> str:
        """The binary sensor an event drives (faces drive "person" without a person detector)."""
        label = str(event.get("label", "face"))
        return "person" if label == "face" and "person" not in self.labels else label

    def _due_updates(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        lim = self.cfg.event_update_min_s
        return [e for k, e in self._updates.items() if now - self._last_update_t.get(k, 0) >= lim]

    def on_stats(self, stats: dict[str, Any]) -> None:
        with self._cond:
            changed = any(stats.get(k) != self._stats.get(k) for k in ("privacy", "recording"))
            self._stats = dict(stats)
            self._dirty_stats = True
            self._dirty_states = self._dirty_states or changed
            self._cond.notify_all()

    # -- network thread ----------------------------------------------------------------------

    def _on_connect(self) -> None:
        with self._cond:
            self._announce = self.cfg.discovery
            self._dirty_states = self._dirty_stats = True
            self._cond.notify_all()

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        try:
            cmd = parse(topic, payload, self.topics, self.status_topic)
        except Rejected as exc:
            self.rejects(topic, str(exc))
            return
        if retained and cmd.name != "ha_status":
            # a command someone left retained on the broker would be re-applied on every
            # reconnect, e.g. turning privacy mode off again after it was switched on
            self.rejects(topic, "retained command (publish commands without retain)")
            return
        log.info("MQTT command", extra=fields(topic=topic, command=cmd.name, value=cmd.value))
        with self._cond:
            self._commands.append(cmd)
            self._cond.notify_all()

    # -- worker ------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(self._has_work, timeout=self._until_interval())
                if self._stop:
                    return
                commands = list(self._commands)
                self._commands.clear()
            for cmd in commands:
                self._apply(cmd)
            try:
                self._publish_due()
            except Exception:  # the bridge must outlive any one bad publish
                log.exception("MQTT publish failed")

    def _has_work(self) -> bool:
        return bool(
            self._stop
            or self._commands
            or self._announce
            or self._dirty_states
            or self._dirty_stats
            or self._person_changes
            or self._snap is not None
            or (self._snap_request and self._shown(self._latest))
            or self._interval_due()
            or self._due_updates()
        )

    def _shown(self, frame: MaskedFrame | None) -> bool:
        """Whether ``frame`` may leave now: in privacy mode only the blank frame may."""
        return frame is not None and (not self.controls.privacy or frame.reason == "privacy")

    def _interval_due(self) -> bool:
        iv = self.cfg.snapshot_interval_s
        return bool(iv and self._latest is not None and time.monotonic() - self._last_snap_t >= iv)

    def _until_interval(self) -> float:
        now = time.monotonic()
        iv = self.cfg.snapshot_interval_s
        wait = max(0.01, iv - (now - self._last_snap_t)) if iv else 3600.0
        for k in self._updates:
            left = self.cfg.event_update_min_s - (now - self._last_update_t.get(k, 0.0))
            wait = min(wait, max(0.01, left))
        return wait

    def _apply(self, cmd: Command) -> None:
        try:
            if cmd.name == "privacy":
                self.controls.set_privacy(cmd.value)
            elif cmd.name == "recording":
                self.controls.set_recording(cmd.value)
            elif cmd.name == "snapshot_now":
                with self._cond:
                    self._snap_request = True
            elif cmd.name == "ha_status" and cmd.value:
                with self._cond:
                    self._announce = self.cfg.discovery
                    self._dirty_states = self._dirty_stats = True
        except Exception:
            log.exception("MQTT command failed", extra=fields(command=cmd.name))
        with self._cond:
            self._dirty_states = True

    def _publish_due(self) -> None:
        link = self.link
        with self._cond:
            updates = self._due_updates()
            for ev in updates:
                eid = str(ev.get("id"))
                self._updates.pop(eid, None)
                self._last_update_t[eid] = time.monotonic()
                self._event_snapshot(self._last_update_t[eid], self._label_key(ev), force=False)
                self._send_event(ev)  # under the lock, as on_event sends (order with `end`)
            announce, self._announce = self._announce, False
            states, self._dirty_states = self._dirty_states, False
            stats_due, self._dirty_stats = self._dirty_stats, False
            snap, self._snap = self._snap, None
            if snap is not None and not self._shown(snap[0]):
                snap = None  # queued before privacy mode took effect: never sent
            if self._snap_request and self._shown(self._latest):
                snap, self._snap_request = (self._latest, "request"), False  # type: ignore[assignment]
            elif snap is None and self._interval_due() and not self.controls.privacy:
                snap = (self._latest, "interval")  # type: ignore[assignment]
            if self._interval_due():
                self._last_snap_t = time.monotonic()  # privacy on: skip this round
                self.snapshot_rounds += 1
            face, objects = self._face, {k: (self._on[k], self._count[k]) for k in self._keys}
            person_changes = list(self._person_changes)
            self._person_changes.clear()
            stats = dict(self._stats)
        if link is None:
            return
        t = self.topics
        if announce:
            for topic, payload in discovery_messages(
                t, self.camera, self.cfg.discovery_prefix, self.labels
            ):
                link.publish(topic, json.dumps(payload), retain=True, qos=1)
            log.info("Home Assistant discovery published", extra=fields(base=t.base))
        if states:
            link.publish(t.state("privacy"), _onoff(self.controls.privacy), retain=True, qos=1)
            link.publish(t.state("recording"), _onoff(self.controls.recording), retain=True, qos=1)
            link.publish(t.face, _onoff(face), retain=True)
            changed = {k for k, _, _ in person_changes}
            for k, (on, n) in objects.items():
                if k not in changed:
                    link.publish(t.object(k), _onoff(on), retain=True)
                    link.publish(t.count(k), str(n), retain=True)
        for k, on, n in person_changes:  # a short visit still shows as ON then OFF
            link.publish(t.object(k), _onoff(on), retain=True)
            link.publish(t.count(k), str(n), retain=True)
        if stats_due:
            # before the pipeline's first figures (connected while it starts): fresh "starting"
            # figures, so a crashed run's retained ones (Faces=5 while Face=off) do not stay
            stats = stats or self._starting_stats()
            stats["events_dropped"] = link.events_dropped
            stats["events_queued"] = link.queued
            stats["commands_rejected"] = self.rejects.rejected
            link.publish(t.stats, json.dumps(stats, default=str), retain=True)
        if snap is not None:
            self._send_snapshot(link, *snap)

    def _starting_stats(self) -> dict[str, Any]:
        """The stats payload before the pipeline has any figures: nothing seen, nothing known.
        Every key of the pipeline's stats is there (``STATS_KEYS``): an entity whose template
        names a missing key makes Home Assistant log a template warning."""
        return {
            **dict.fromkeys(STATS_KEYS),
            "escrow": "unknown",
            "detect_profile": "starting",
            "detect_profile_reason": "",
            "board_overloaded": False,
            "fps": 0.0,
            "detect_fps": 0.0,
            "detector_ms": None,
            "faces": 0,
            "frames_total": 0,
            "frames_obscured": 0,
            "frames_dropped": 0,
            "detector_errors": 0,
            "recording_bytes": None,
            "recording_error": None,
            "source_state": "starting",
            "recording": self.controls.recording,
            "privacy": self.controls.privacy,
            "latency_ms": None,
        }

    def _send_snapshot(self, link: MQTTLink, frame: MaskedFrame, why: str) -> None:
        if not self._shown(frame):  # privacy mode came on while this one was being chosen
            return
        try:
            jpeg = encode_snapshot(
                require_masked(frame),
                quality=self.cfg.snapshot_quality,
                max_width=self.cfg.snapshot_max_width,
            )
        except SnapshotError as exc:
            log.error("snapshot failed", extra=fields(error=exc))
            return
        with self._cond:
            self._last_snap_t = time.monotonic()
        if link.publish(self.topics.snapshot, jpeg, retain=True):
            self.snapshots_sent += 1
            log.debug("snapshot", extra=fields(why=why, frame=frame.index, bytes=len(jpeg)))
        # an event's frame is also the latest snapshot of its labels (image entity per label)
        for label in why.removeprefix("event:").split(",") if why.startswith("event:") else ():
            if label:
                link.publish(self.topics.label_snapshot(label), jpeg, retain=True)


def attach(service: Any, cfg: Config) -> MQTTBridge:
    """Start the bridge for a service (connecting only if ``mqtt.enabled``; a reload can turn it
    on or off). The daemon records whatever the broker does."""
    labels = tuple(object_labels(cfg.detect.people))
    bridge = MQTTBridge(cfg.mqtt, cfg.camera.name, service, labels)
    service.add_listener(bridge)
    service.reload_hooks.append(bridge.reconfigure)
    bridge.start()
    return bridge
