"""MQTT bridge against a real Mosquitto broker: discovery, availability, events across a broker
restart, TLS, commands, snapshots. The pipeline side is the bridge's listener interface fed
with masked frames; the full daemon is exercised in test_mqtt_daemon.py."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from daemon.frames import Frame
from daemon.mask.masker import Masker
from daemon.mqtt.bridge import MQTTBridge
from daemon.mqtt.commands import MAX_PAYLOAD
from daemon.mqtt.config import MQTTConfig, TLSConfig
from daemon.mqtt.discovery import EVENT_TYPES
from daemon.mqtt.snapshot import encode_snapshot
from tests._live import wait_for
from tests._mqtt import Broker, Watcher, make_ca

CAMERA = "porch"
BASE = f"veilcam/{CAMERA}"
MASKER = Masker()


class FakeControls:
    """The service's control surface (daemon.events.PipelineControls), recording calls."""

    def __init__(self) -> None:
        self.privacy = False
        self.recording = True
        self.calls: list[tuple[str, bool]] = []

    def set_privacy(self, on: bool) -> None:
        self.privacy = on
        self.calls.append(("privacy", on))

    def set_recording(self, on: bool) -> None:
        self.recording = on
        self.calls.append(("recording", on))

    def add_listener(self, listener: Any) -> None:
        pass


@pytest.fixture
def broker(tmp_path: Path):
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def cfg_for(broker: Broker, **kw: Any) -> MQTTConfig:
    base = {
        "host": "127.0.0.1",
        "port": broker.port,
        "retry_initial_s": 0.05,
        "retry_max_s": 0.5,
        "snapshot_interval_s": 0,
        # these tests follow every event in order; the rate limit has its own test
        # (tests/test_mqtt_restart.py, on the real daemon)
        "event_update_min_s": 0,
        "event_snapshot_min_s": 0,
    }
    return MQTTConfig(**{**base, **kw})


def make_bridge(cfg: MQTTConfig, controls: FakeControls | None = None) -> MQTTBridge:
    b = MQTTBridge(cfg, CAMERA, controls or FakeControls())
    b.start()
    return b


def frame(i: int, image: np.ndarray | None = None, faces=(), privacy: bool = False):
    """A masked frame, made by the masker as in the pipeline."""
    if image is None:
        image = np.full((90, 160, 3), 120, np.uint8)
    raw = Frame(image, i, i / 25, time.monotonic())
    if privacy:
        return MASKER.obscure(raw, "privacy")
    return MASKER.mask(raw, MASKER.regions(list(faces), raw.width, raw.height))


def configs(w: Watcher) -> dict[str, dict[str, Any]]:
    return {m.topic: json.loads(m.payload) for m in w.msgs if m.topic.endswith("/config")}


# -- discovery and availability --------------------------------------------------------------


def test_discovery_payloads_have_what_home_assistant_requires(broker: Broker) -> None:
    bridge = make_bridge(cfg_for(broker))
    try:
        first = Watcher(broker, ("homeassistant/#",)).start()
        first.wait(lambda ms: len(configs(first)) >= 16, 10, "discovery published")
        first.stop()
        # a client that connects afterwards still sees everything: discovery is retained
        w = Watcher(broker, ("homeassistant/#", f"{BASE}/#")).start()
        w.wait(lambda ms: len(configs(w)) >= 16, 10, "16 discovery messages")
        found = configs(w)
        assert all(m.retain for m in w.msgs if m.topic.endswith("/config"))
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for topic, p in found.items():
            prefix, component, node, key, last = topic.split("/")
            assert (prefix, node, last) == ("homeassistant", f"veilcam_{CAMERA}", "config")
            by_kind.setdefault(component, []).append(p)
            assert p["unique_id"] == f"veilcam_{CAMERA}_{key}"
            assert p["availability_topic"] == f"{BASE}/availability"
            dev = p["device"]
            assert dev["identifiers"] == [f"veilcam_{CAMERA}"]
            assert {"name", "manufacturer", "model", "sw_version"} <= dev.keys()
            assert p["origin"]["name"] == "veilcam"
            assert p["name"]
            # full key names only, no abbreviations such as "stat_t" or "dev"
            assert not {"stat_t", "cmd_t", "dev", "uniq_id", "avty_t", "o"} & p.keys()
            for k, v in p.items():
                if k.endswith("topic") and k != "availability_topic":
                    assert v.startswith(BASE + "/"), (k, v)
        assert len({p["unique_id"] for p in found.values()}) == len(found)
        assert set(by_kind) == {"camera", "binary_sensor", "sensor", "switch", "button", "event"}
        assert by_kind["camera"][0]["topic"] == f"{BASE}/snapshot"
        binary = {p["name"] for p in by_kind["binary_sensor"]}
        assert binary == {"Person", "Face", "Board overloaded"}
        overloaded = next(p for p in by_kind["binary_sensor"] if p["name"] == "Board overloaded")
        assert overloaded["device_class"] == "problem"
        assert overloaded["entity_category"] == "diagnostic"
        profile = next(p for p in by_kind["sensor"] if p["name"] == "Detection profile")
        assert profile["value_template"] == "{{ value_json.detect_profile }}"
        assert profile["json_attributes_topic"] == f"{BASE}/stats"
        names = {p["name"] for p in by_kind["sensor"]}
        assert {"Faces", "Processing rate", "Detector latency", "Frames obscured"} <= names
        assert {"Recording disk use", "MQTT events dropped"} <= names
        escrow = next(p for p in by_kind["sensor"] if p["name"] == "Escrow key")
        assert escrow["entity_category"] == "diagnostic"
        assert escrow["value_template"] == "{{ value_json.escrow }}"
        for p in by_kind["sensor"] + by_kind["binary_sensor"]:
            assert p["state_topic"].startswith(BASE + "/")
        switches = {p["name"]: p for p in by_kind["switch"]}
        assert set(switches) == {"Recording", "Privacy mode"}
        for p in switches.values():
            assert p["command_topic"].endswith("/set") and p["state_topic"].endswith("/state")
        assert by_kind["button"][0]["command_topic"] == f"{BASE}/snapshot_now/set"
        ev = by_kind["event"][0]
        assert ev["state_topic"] == f"{BASE}/events" and ev["event_types"] == list(EVENT_TYPES)
        # the states the entities point at are there (retained) for a late subscriber
        assert w.wait_topic(f"{BASE}/availability")[0].payload == b"online"
        assert w.wait_topic(f"{BASE}/privacy/state")[0].payload == b"OFF"
        assert w.wait_topic(f"{BASE}/recording/state")[0].payload == b"ON"
        w.stop()
    finally:
        bridge.stop()


def test_discovery_published_again_when_home_assistant_comes_online(broker: Broker) -> None:
    bridge = make_bridge(cfg_for(broker))
    w = Watcher(broker, ("homeassistant/#",)).start()
    try:
        w.wait(lambda ms: len(configs(w)) >= 14, 10, "first discovery")
        w.clear()
        w.publish("homeassistant/status", "offline")
        w.publish("homeassistant/status", "online")
        w.wait(lambda ms: len(configs(w)) >= 14, 10, "discovery after HA's birth message")
        assert all(not m.retain for m in w.msgs if m.topic.endswith("/config"))  # live copies
    finally:
        w.stop()
        bridge.stop()


def test_custom_prefix_base_topic_and_client_id(broker: Broker) -> None:
    cfg = cfg_for(broker, base_topic="home/cams/front", discovery_prefix="ha", client_id="cam-1")
    bridge = make_bridge(cfg)
    w = Watcher(broker, ("ha/#", "home/#")).start()
    try:
        w.wait(lambda ms: len(configs(w)) >= 14, 10, "discovery under ha/")
        assert all(t.startswith("ha/") for t in configs(w))
        assert w.wait_topic("home/cams/front/availability")[0].payload == b"online"
        w.clear()
        w.publish("ha/status", "online")
        w.wait(lambda ms: len(configs(w)) >= 14, 10, "re-announce on ha/status")
    finally:
        w.stop()
        bridge.stop()


def test_clean_stop_says_offline(broker: Broker) -> None:
    bridge = make_bridge(cfg_for(broker))
    w = Watcher(broker, (f"{BASE}/availability",)).start()
    w.wait(lambda ms: [m for m in ms if m.payload == b"online"], 10, "online")
    bridge.stop()
    w.wait(lambda ms: ms[-1].payload == b"offline", 10, "offline after a clean stop")
    w.stop()


CHILD = """
import sys, threading
from daemon.mqtt.bridge import MQTTBridge
from daemon.mqtt.config import MQTTConfig

class C:
    privacy = False
    recording = True
    def set_privacy(self, on): pass
    def set_recording(self, on): pass

b = MQTTBridge(MQTTConfig(port=int(sys.argv[1]), keepalive_s=5), "porch", C())
b.start()
assert b.link is not None and b.link.connected.wait(30)
print("connected", flush=True)
threading.Event().wait()  # until killed
"""


def test_last_will_is_offline_after_kill_9(broker: Broker, repo_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(broker.port)],
        cwd=repo_dir,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "connected"
        w = Watcher(broker, (f"{BASE}/availability",)).start()
        w.wait(lambda ms: ms and ms[-1].payload == b"online", 10, "online")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # the socket closes with the process, so the broker sends the will at once
        w.wait(lambda ms: ms[-1].payload == b"offline", 10, "the last will")
        w.stop()
        late = Watcher(broker, (f"{BASE}/availability",)).start()
        msgs = late.wait_topic(f"{BASE}/availability")
        assert msgs[-1].payload == b"offline" and msgs[-1].retain
        late.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


# -- events ----------------------------------------------------------------------------------


def event(n: int, kind: str = "update") -> dict[str, Any]:
    return {
        "type": kind,
        "id": f"{CAMERA}-20260101-000000-1",
        "label": "face",
        "count": n,
        "max_count": n,
        "track_ids": list(range(n)),
        "start": 1767225600.0,
        "time": 1767225600.0 + n,
        "end": None,
        "camera": CAMERA,
    }


def test_events_carry_ids_label_counts_and_times(broker: Broker) -> None:
    bridge = make_bridge(cfg_for(broker))
    w = Watcher(broker, (f"{BASE}/#",)).start()
    try:
        wait_for(lambda: bridge.link and bridge.link.connected.is_set(), 10, "connected")
        bridge.on_event(event(1, "start"))
        bridge.on_event(event(2, "update"))
        end = event(0, "end")
        end["end"] = end["time"]
        bridge.on_event(end)
        got = [json.loads(m.payload) for m in w.wait_topic(f"{BASE}/events", n=3)]
        assert [g["event_type"] for g in got] == ["start", "update", "end"]
        for g in got:
            assert {"id", "label", "count", "max_count", "track_ids", "start", "time"} <= g.keys()
            assert g["label"] == "face"
        assert got[-1]["end"] is not None

        # the person sensor follows the events, each change in order
        def on_then_off(ms: list) -> bool:
            seq = [m.payload for m in w.on(f"{BASE}/person")]
            return b"ON" in seq and b"OFF" in seq[seq.index(b"ON") :]

        w.wait(on_then_off, 10, "person ON then OFF")
    finally:
        w.stop()
        bridge.stop()


@pytest.fixture
def persistent_broker(tmp_path: Path):
    """A broker that keeps sessions across a restart, so that a watcher misses nothing."""
    b = Broker(tmp_path / "pbroker", persistence=True)
    b.start()
    yield b
    b.stop()


def _outage(broker: Broker, queue_size: int, n_events: int) -> tuple[list[int], MQTTBridge]:
    bridge = make_bridge(cfg_for(broker, queue_size=queue_size))
    w = Watcher(broker, (f"{BASE}/events",), client_id="ha-watch", persistent=True).start()
    wait_for(lambda: bridge.link and bridge.link.connected.is_set(), 10, "connected")
    bridge.on_event(event(0, "start"))
    w.wait_topic(f"{BASE}/events")
    # acknowledged before the outage (one in flight at that moment would come again: QoS 1)
    wait_for(lambda: bridge.link.queued == 0, 10, "event 0 acknowledged")
    broker.stop()
    wait_for(lambda: not bridge.link.connected.is_set(), 10, "bridge notices the outage")
    for i in range(1, n_events + 1):  # the pipeline keeps going while the broker is away
        bridge.on_event(event(i))
    assert bridge.link.queued == min(n_events, queue_size)
    broker.start()
    w.wait(lambda ms: w.connected.is_set(), 20, "watcher back")
    expected = min(n_events, queue_size)
    msgs = w.wait_topic(f"{BASE}/events", timeout=20, n=1 + expected)
    w.stop()
    return [json.loads(m.payload)["count"] for m in msgs], bridge


def test_events_during_broker_outage_arrive_in_order_after_restart(
    persistent_broker: Broker,
) -> None:
    counts, bridge = _outage(persistent_broker, queue_size=100, n_events=60)
    try:
        assert counts == list(range(61))
        assert bridge.link.events_dropped == 0
    finally:
        bridge.stop()


def test_event_queue_overflow_drops_the_oldest_and_counts_them(persistent_broker: Broker) -> None:
    counts, bridge = _outage(persistent_broker, queue_size=10, n_events=25)
    try:
        assert counts == [0, *range(16, 26)]  # the 15 oldest waiting ones went
        assert bridge.link.events_dropped == 15
        w = Watcher(persistent_broker, (f"{BASE}/stats",)).start()
        bridge.on_stats({"fps": 25.0, "faces": 0, "privacy": False, "recording": True})
        w.wait(lambda ms: ms and json.loads(ms[-1].payload).get("events_dropped") == 15, 10,
               "events_dropped on the stats topic")  # fmt: skip
        w.stop()
    finally:
        bridge.stop()


# -- TLS and login ---------------------------------------------------------------------------


def test_tls_with_generated_ca_client_certificate_and_password_file(tmp_path: Path) -> None:
    tls = make_ca(tmp_path / "pki")
    broker = Broker(tmp_path / "tlsbroker", tls=tls, users={"veilcam": "s3cret pass"})
    broker.start()
    pw = tmp_path / "mqtt.pass"
    pw.write_text("s3cret pass\n")  # a trailing newline, as editors leave it
    cfg = cfg_for(
        broker,
        username="veilcam",
        password_file=pw,
        tls=TLSConfig(ca_file=tls.ca, cert_file=tls.client_cert, key_file=tls.client_key),
    )
    bridge = make_bridge(cfg)
    try:
        w = Watcher(broker, (f"{BASE}/#",), tls=tls, auth=("veilcam", "s3cret pass")).start()
        assert w.wait_topic(f"{BASE}/availability")[0].payload == b"online"
        bridge.on_event(event(1, "start"))
        assert json.loads(w.wait_topic(f"{BASE}/events")[0].payload)["count"] == 1
        w.stop()
    finally:
        bridge.stop()
        broker.stop()


def test_tls_with_an_unknown_ca_or_wrong_password_never_connects(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tls = make_ca(tmp_path / "pki")
    other = make_ca(tmp_path / "pki2", "other")
    broker = Broker(tmp_path / "tlsbroker", tls=tls, users={"veilcam": "right"})
    broker.start()
    pw = tmp_path / "mqtt.pass"
    pw.write_text("xyzzy-not-it\n")
    caplog.set_level(logging.INFO, "daemon.mqtt")
    good_tls = TLSConfig(ca_file=tls.ca, cert_file=tls.client_cert, key_file=tls.client_key)
    bad_ca = TLSConfig(ca_file=other.ca, cert_file=tls.client_cert, key_file=tls.client_key)
    wrong_ca = make_bridge(cfg_for(broker, tls=bad_ca, client_id="a"))
    wrong_pw = make_bridge(
        cfg_for(broker, tls=good_tls, username="veilcam", password_file=pw, client_id="b")
    )
    try:
        wait_for(
            lambda: sum("unreachable" in r.getMessage() for r in caplog.records) >= 2,
            20,
            "failed TLS handshakes reported and retried",
        )
        wait_for(
            lambda: any("refused" in r.getMessage() for r in caplog.records),
            20,
            "refused login reported",
        )
        assert not wrong_ca.link.connected.is_set() and not wrong_pw.link.connected.is_set()
        logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
        assert "xyzzy" not in logged  # the password is never logged
    finally:
        wrong_ca.stop(1)
        wrong_pw.stop(1)
        broker.stop()


def test_unreadable_password_file_disables_mqtt_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "daemon.mqtt")
    cfg = MQTTConfig(port=1, username="u", password_file=tmp_path / "missing")
    bridge = make_bridge(cfg)
    try:
        assert bridge.link is None
        assert any("password file" in r.getMessage() or "password file" in str(r.__dict__)
                   for r in caplog.records)  # fmt: skip
        bridge.on_frame(frame(0), 0)  # the pipeline's calls still work
        bridge.on_event(event(1, "start"))
    finally:
        bridge.stop()


# -- commands --------------------------------------------------------------------------------


def test_switches_drive_the_controls_and_report_state(broker: Broker) -> None:
    controls = FakeControls()
    bridge = make_bridge(cfg_for(broker), controls)
    w = Watcher(broker, (f"{BASE}/#",)).start()
    try:
        w.wait(lambda ms: [m for m in ms if m.topic == f"{BASE}/privacy/state"], 10, "state")
        w.publish(f"{BASE}/privacy/set", "ON")
        w.wait(lambda ms: w.on(f"{BASE}/privacy/state")[-1].payload == b"ON", 10, "privacy ON")
        w.publish(f"{BASE}/recording/set", "OFF")
        w.wait(lambda ms: w.on(f"{BASE}/recording/state")[-1].payload == b"OFF", 10, "rec OFF")
        w.publish(f"{BASE}/privacy/set", "OFF")
        w.wait(lambda ms: w.on(f"{BASE}/privacy/state")[-1].payload == b"OFF", 10, "privacy OFF")
        assert controls.calls == [("privacy", True), ("recording", False), ("privacy", False)]
    finally:
        w.stop()
        bridge.stop()


def test_a_thousand_random_and_malformed_payloads_leave_the_bridge_working(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "daemon.mqtt")
    controls = FakeControls()
    bridge = make_bridge(cfg_for(broker), controls)
    w = Watcher(broker, (f"{BASE}/privacy/state",)).start()
    rng = random.Random(1234)
    topics = [
        f"{BASE}/privacy/set", f"{BASE}/recording/set", f"{BASE}/snapshot_now/set",
        f"{BASE}/nope/set", f"{BASE}/privacy/set", "homeassistant/status",
    ]  # fmt: skip
    junk = [b"", b"on", b"ON ", b"\xff\xfe", b"ON\x00", b"{}", b'{"state":"ON"}', b"null",
            b"OFFF", b"PRESS" * 20, b"1", b"true", "ÖN".encode(), b"A" * 10_000,
            b"online\n" * 3]  # fmt: skip
    expected_privacy = False
    valid = 0
    try:
        wait_for(lambda: bridge.link and bridge.link.connected.is_set(), 10, "connected")
        for _ in range(1000):
            topic = rng.choice(topics)
            r = rng.random()
            if r < 0.45:
                payload = rng.randbytes(rng.randint(0, 300))
            elif r < 0.9:
                payload = rng.choice(junk)
            else:
                payload = rng.choice([b"ON", b"OFF"])
            w.client.publish(topic, payload, qos=1)
            if topic.endswith("privacy/set") and payload in (b"ON", b"OFF"):
                expected_privacy = payload == b"ON"
            if payload.strip() in (b"ON", b"OFF") and topic.endswith(
                ("privacy/set", "recording/set")
            ):
                valid += 1
        # a final valid command: when it is applied, everything before it was handled
        w.publish(f"{BASE}/privacy/set", "ON" if not expected_privacy else "OFF")
        final = not expected_privacy
        # the stream holds earlier commands of the same value (and stripped ones such as b"ON "
        # that expected_privacy does not follow), so wait for the count, then check the last
        wait_for(lambda: len(controls.calls) >= valid + 1, 30, "every valid command applied")
        assert controls.calls[-1] == ("privacy", final)
        assert bridge._worker.is_alive() and bridge.link.connected.is_set()
        assert bridge.rejects.rejected > 800
        assert len(controls.calls) == valid + 1
        rejected = [r for r in caplog.records if r.getMessage() == "MQTT command ignored"]
        assert rejected, "rejections are logged"
        assert all("topic" in str(r.__dict__) for r in rejected)
        # still fully working afterwards
        w.wait(lambda ms: ms and ms[-1].payload == (b"ON" if final else b"OFF"), 10, "state")
    finally:
        w.stop()
        bridge.stop()


def test_commands_outside_the_base_topic_are_not_heard(broker: Broker) -> None:
    controls = FakeControls()
    bridge = make_bridge(cfg_for(broker), controls)
    w = Watcher(broker, ("unused/x",)).start()
    try:
        wait_for(lambda: bridge.link and bridge.link.connected.is_set(), 10, "connected")
        w.publish("veilcam/other/privacy/set", "ON")
        w.publish(f"{BASE}/privacy", "ON")
        w.publish(f"{BASE}/privacy/set/x", "ON")
        w.publish(f"{BASE}/recording/set", "OFF")  # a marker: handled after the three above
        wait_for(lambda: controls.calls, 10, "marker command")
        assert controls.calls == [("recording", False)]
        assert bridge.rejects.rejected == 0  # never even received
    finally:
        w.stop()
        bridge.stop()


def test_oversized_payload_is_rejected_with_its_topic(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "daemon.mqtt")
    controls = FakeControls()
    bridge = make_bridge(cfg_for(broker), controls)
    w = Watcher(broker, ("unused/x",)).start()
    try:
        wait_for(lambda: bridge.link and bridge.link.connected.is_set(), 10, "connected")
        w.publish(f"{BASE}/privacy/set", b"ON" + b" " * MAX_PAYLOAD)
        wait_for(lambda: bridge.rejects.rejected == 1, 10, "rejection")
        rec = next(r for r in caplog.records if r.getMessage() == "MQTT command ignored")
        kv = rec.__dict__["veilcam_fields"]
        assert kv["topic"] == f"{BASE}/privacy/set" and "too large" in kv["reason"]
        assert controls.calls == []
    finally:
        w.stop()
        bridge.stop()


# -- snapshots -------------------------------------------------------------------------------


def decode(jpeg: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a JPEG"
    return img


def test_snapshot_button_sends_the_masked_frame_as_jpeg(broker: Broker) -> None:
    bridge = make_bridge(cfg_for(broker))
    w = Watcher(broker, (f"{BASE}/snapshot",)).start()
    try:
        rng = np.random.default_rng(0)
        image = rng.integers(0, 255, (240, 320, 3), np.uint8)
        f = frame(7, image, faces=[(100, 60, 80, 100)])
        bridge.on_frame(f, 1)
        w.publish(f"{BASE}/snapshot_now/set", "PRESS")
        got = decode(w.wait_topic(f"{BASE}/snapshot")[0].payload)
        assert got.shape == image.shape
        # it is the masked frame (close up to JPEG loss), not the raw one
        inside = (slice(90, 130), slice(125, 155))
        assert np.abs(got[inside].astype(int) - f.image[inside].astype(int)).mean() < 12
        assert np.abs(got[inside].astype(int) - image[inside].astype(int)).mean() > 30
    finally:
        w.stop()
        bridge.stop()


def test_periodic_snapshots_stop_in_privacy_mode_after_one_blank_frame(broker: Broker) -> None:
    controls = FakeControls()
    bridge = make_bridge(cfg_for(broker, snapshot_interval_s=0.05), controls)
    w = Watcher(broker, (f"{BASE}/snapshot",)).start()
    try:
        bridge.on_frame(frame(0, np.full((60, 80, 3), 200, np.uint8)), 0)
        w.wait_topic(f"{BASE}/snapshot", n=3)
        controls.privacy = True
        bridge.on_frame(frame(1, np.full((60, 80, 3), 200, np.uint8), privacy=True), 0)
        w.wait(lambda ms: decode(ms[-1].payload).max() < 10, 10, "the blank privacy snapshot")
        n = len(w.msgs)
        # what reached the broker, not the bridge's counter: the watcher may get the blank frame
        # before the publishing thread has counted it
        wait_for(lambda: bridge.snapshots_sent == n, 10, "the blank frame counted")
        for i in range(2, 40):  # the pipeline keeps sending obscured frames
            bridge.on_frame(frame(i, np.full((60, 80, 3), 200, np.uint8), privacy=True), 0)
        start = bridge.snapshot_rounds
        wait_for(lambda: bridge.snapshot_rounds >= start + 5, 10, "five snapshot periods")
        assert bridge.snapshots_sent == n and len(w.msgs) == n
        # the button still answers, with the obscured frame
        w.publish(f"{BASE}/snapshot_now/set", "PRESS")
        w.wait(lambda ms: len(ms) > n, 10, "snapshot on request")
        assert decode(w.msgs[-1].payload).max() < 10
    finally:
        w.stop()
        bridge.stop()


def test_event_snapshot_comes_from_the_frame_after_the_event(broker: Broker) -> None:
    bridge = make_bridge(cfg_for(broker))
    w = Watcher(broker, (f"{BASE}/snapshot",)).start()
    try:
        wait_for(lambda: bridge.link and bridge.link.connected.is_set(), 10, "connected")
        bridge.on_frame(frame(0, np.full((60, 80, 3), 50, np.uint8)), 0)
        bridge.on_event(event(1, "start"))
        bridge.on_frame(frame(1, np.full((60, 80, 3), 180, np.uint8)), 1)
        got = decode(w.wait_topic(f"{BASE}/snapshot")[0].payload)
        assert abs(float(got.mean()) - 180) < 5
    finally:
        w.stop()
        bridge.stop()


def test_snapshot_encoder_refuses_raw_frames() -> None:
    raw = Frame(np.zeros((8, 8, 3), np.uint8), 0, 0.0, 0.0)
    with pytest.raises(TypeError):
        encode_snapshot(raw)  # type: ignore[arg-type]


def test_snapshot_downscales_wide_frames() -> None:
    f = frame(0, np.zeros((1080, 1920, 3), np.uint8))
    assert decode(encode_snapshot(f, max_width=640)).shape == (360, 640, 3)


# -- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"password_file": "/x"},
        {"base_topic": "veilcam/#"},
        {"base_topic": "veilcam/"},
        {"discovery_prefix": ""},
        {"tls": {"ca_file": "/ca", "cert_file": "/c"}},
        {"retry_initial_s": 10, "retry_max_s": 1},
        {"port": 0},
    ],
)
def test_bad_mqtt_settings_are_rejected(bad: dict[str, Any]) -> None:
    from daemon.config import ConfigError, parse

    text = "mqtt:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in bad.items())
    with pytest.raises(ConfigError) as e:
        parse(text, "c.yaml")
    assert all(p.startswith("c.yaml:") and "mqtt" in p for p in e.value.problems)


def test_reload_with_new_mqtt_settings_reconnects_and_keeps_queued_events(
    broker: Broker, tmp_path: Path
) -> None:
    from daemon.config import Config

    other = Broker(tmp_path / "other")
    other.start()
    w2 = Watcher(other, ("home/#",)).start()
    bridge = make_bridge(cfg_for(broker))
    try:
        wait_for(lambda: bridge.link and bridge.link.connected.is_set(), 10, "connected")
        broker.stop()
        wait_for(lambda: not bridge.link.connected.is_set(), 10, "the outage noticed")
        bridge.on_event(event(1, "start"))
        assert bridge.link.queued == 1
        # SIGHUP with another broker and base topic: the waiting event moves to the new link
        new = Config(mqtt=cfg_for(other, base_topic="home/porch"), camera={"name": CAMERA})
        bridge.reconfigure(new)
        assert w2.wait_topic("home/porch/availability")[-1].payload == b"online"
        assert json.loads(w2.wait_topic("home/porch/events")[0].payload)["count"] == 1
        w2.publish("home/porch/recording/set", "OFF")
        wait_for(lambda: bridge.controls.recording is False, 10, "command on the new base topic")
    finally:
        w2.stop()
        bridge.stop()
        other.stop()


def test_a_retained_command_is_not_applied(broker: Broker) -> None:
    """A stale retained "privacy OFF" must not undo privacy mode at every reconnect."""
    w = Watcher(broker, ("unused/x",)).start()
    w.client.publish(f"{BASE}/privacy/set", "OFF", qos=1, retain=True).wait_for_publish(10)
    controls = FakeControls()
    controls.privacy = True
    bridge = make_bridge(cfg_for(broker), controls)
    try:
        wait_for(lambda: bridge.rejects.rejected == 1, 10, "the retained command refused")
        w.publish(f"{BASE}/recording/set", "OFF")  # live commands still work
        wait_for(lambda: controls.calls, 10, "live command")
        assert controls.calls == [("recording", False)] and controls.privacy is True
    finally:
        w.stop()
        bridge.stop()


def test_the_first_stats_carry_every_key_the_entities_read(broker: Broker) -> None:
    """Before the pipeline's first figures the bridge publishes "starting" stats; a key an
    entity's template names but the payload lacks is a template warning in Home Assistant."""
    import re

    from daemon.mqtt.discovery import Topics, entities

    bridge = make_bridge(cfg_for(broker))
    w = Watcher(broker, (f"{BASE}/stats",)).start()
    try:
        first = json.loads(w.wait_topic(f"{BASE}/stats")[0].payload)
    finally:
        w.stop()
        bridge.stop()
    read = set()
    for _, _, conf in entities(Topics(BASE), ("person", "car", "dog", "cat")):
        if conf.get("state_topic") == f"{BASE}/stats":
            for key in ("value_template", "json_attributes_template"):
                read |= set(re.findall(r"value_json\.(\w+)", conf.get(key, "")))
    assert {"escrow", "detect_profile", "board_overloaded"} <= read
    assert read <= set(first), read - set(first)
