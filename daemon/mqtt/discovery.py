"""Home Assistant MQTT discovery: one device per camera and its entities.

One retained config message per entity on ``<prefix>/<component>/veilcam_<camera>/<key>/config``,
in the long (unabbreviated) form of the Home Assistant MQTT docs. Every entity carries a
``unique_id``, the same ``device`` block (so Home Assistant groups them under one device), an
``origin`` block, and ``availability_topic`` = ``<base>/availability``. The messages are sent
again whenever Home Assistant announces itself on ``<prefix>/status`` with ``online``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon import __version__

EVENT_TYPES = ("start", "update", "end")
ON, OFF, PRESS = "ON", "OFF", "PRESS"


@dataclass(frozen=True)
class Topics:
    """Every topic the daemon uses, all below the base topic."""

    base: str

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def snapshot(self) -> str:
        return f"{self.base}/snapshot"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"

    @property
    def person(self) -> str:
        return f"{self.base}/person"

    @property
    def face(self) -> str:
        return f"{self.base}/face"

    def object(self, label: str) -> str:
        """ON/OFF while a tracked ``label`` (person, car, dog, cat) is in view."""
        return f"{self.base}/{label}"

    def label_snapshot(self, label: str) -> str:
        """The masked frame of ``label``'s latest event start or update (retained JPEG)."""
        return f"{self.base}/{label}/snapshot"

    def count(self, label: str) -> str:
        """How many tracked ``label`` objects are in view (retained, on every change)."""
        return f"{self.base}/{label}/count"

    def state(self, switch: str) -> str:
        return f"{self.base}/{switch}/state"

    def command(self, name: str) -> str:
        return f"{self.base}/{name}/set"

    @property
    def commands(self) -> str:
        """The only subscription below the base topic."""
        return f"{self.base}/+/set"


SWITCHES = ("privacy", "recording")
BUTTONS = ("snapshot_now",)
COMMANDS = SWITCHES + BUTTONS


def device_block(camera: str) -> dict[str, Any]:
    return {
        "identifiers": [f"veilcam_{camera}"],
        "name": f"veilcam {camera}",
        "manufacturer": "veilcam",
        "model": "privacy camera (faces masked on the device)",
        "sw_version": __version__,
    }


ORIGIN = {"name": "veilcam", "sw_version": __version__}


def _stat(name: str, key: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "value_template": "{{ value_json." + key + " }}", **extra}


LABEL_NAMES = {"person": "Person", "car": "Car", "dog": "Dog", "cat": "Cat"}
LABEL_ICONS = {"person": "mdi:account", "car": "mdi:car", "dog": "mdi:dog", "cat": "mdi:cat"}


def object_entities(t: Topics, labels: tuple[str, ...]) -> list[tuple[str, str, dict[str, Any]]]:
    """Per label of the person detector: an occupancy binary sensor (Person's already exists),
    an image entity with the masked frame of its latest event and a count sensor, like
    Frigate's per-object topics."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    for label in labels:
        name = LABEL_NAMES.get(label, label.capitalize())
        if label != "person":
            out.append(
                (
                    "binary_sensor",
                    label,
                    {
                        "name": name,
                        "state_topic": t.object(label),
                        "device_class": "occupancy",
                        "payload_on": ON,
                        "payload_off": OFF,
                        "icon": LABEL_ICONS.get(label),
                    },
                )
            )
        out.append(
            (
                "image",
                f"{label}_snapshot",
                {"name": f"{name} snapshot", "image_topic": t.label_snapshot(label),
                 "content_type": "image/jpeg"},
            )
        )  # fmt: skip
        out.append(
            (
                "sensor",
                f"{label}_count",
                {"name": f"{name} count", "state_topic": t.count(label),
                 "state_class": "measurement", "icon": LABEL_ICONS.get(label)},
            )
        )  # fmt: skip
    return out


def entities(t: Topics, labels: tuple[str, ...] = ()) -> list[tuple[str, str, dict[str, Any]]]:
    """(component, key, component-specific config) of every entity. ``labels``: what the person
    detector reports (empty when it is off: then "Person" follows the face events)."""
    stats = {"state_topic": t.stats}
    # why this detection profile, and the board's projected load (README, "Detection profiles")
    profile_attrs = {
        "json_attributes_topic": t.stats,
        "json_attributes_template": "{{ {'reason': value_json.detect_profile_reason, "
        "'projected_cpu_percent': value_json.projected_cpu_percent} | tojson }}",
    }
    return [*object_entities(t, labels),
        ("camera", "snapshot", {"name": "Snapshot", "topic": t.snapshot}),
        (
            "binary_sensor",
            "person",
            {"name": "Person", "state_topic": t.person, "device_class": "occupancy",
             "payload_on": ON, "payload_off": OFF},
        ),
        (
            "binary_sensor",
            "face",
            {"name": "Face", "state_topic": t.face, "device_class": "occupancy",
             "payload_on": ON, "payload_off": OFF},
        ),
        ("sensor", "faces", {**stats, **_stat("Faces", "faces", state_class="measurement",
                                              icon="mdi:face-recognition")}),
        ("sensor", "fps", {**stats, **_stat("Processing rate", "fps", state_class="measurement",
                                            unit_of_measurement="fps",
                                            entity_category="diagnostic")}),
        ("sensor", "detector_latency", {**stats, **_stat(
            "Detector latency", "detector_ms", state_class="measurement", device_class="duration",
            unit_of_measurement="ms", entity_category="diagnostic")}),
        ("sensor", "frames_obscured", {**stats, **_stat(
            "Frames obscured", "frames_obscured", state_class="total_increasing",
            entity_category="diagnostic", icon="mdi:eye-off")}),
        ("sensor", "recording_disk", {**stats, **_stat(
            "Recording disk use", "recording_bytes", state_class="measurement",
            device_class="data_size", unit_of_measurement="B", entity_category="diagnostic")}),
        ("sensor", "events_dropped", {**stats, **_stat(
            "MQTT events dropped", "events_dropped", state_class="total_increasing",
            entity_category="diagnostic")}),
        ("sensor", "source_state", {**stats, **_stat(
            "Camera source", "source_state", entity_category="diagnostic", icon="mdi:cctv")}),
        ("sensor", "escrow", {**stats, **_stat(
            "Escrow key", "escrow", entity_category="diagnostic", icon="mdi:key-chain")}),
        ("sensor", "detect_profile", {**stats, **_stat(
            "Detection profile", "detect_profile", entity_category="diagnostic", icon="mdi:tune",
            **profile_attrs)}),
        (
            "binary_sensor",
            "board_overloaded",
            {**stats, "name": "Board overloaded", "device_class": "problem",
             "value_template": "{{ 'ON' if value_json.board_overloaded else 'OFF' }}",
             "payload_on": ON, "payload_off": OFF, "entity_category": "diagnostic",
             **profile_attrs},
        ),
        (
            "switch",
            "recording",
            {"name": "Recording", "command_topic": t.command("recording"),
             "state_topic": t.state("recording"), "payload_on": ON, "payload_off": OFF,
             "state_on": ON, "state_off": OFF, "icon": "mdi:record-rec"},
        ),
        (
            "switch",
            "privacy",
            {"name": "Privacy mode", "command_topic": t.command("privacy"),
             "state_topic": t.state("privacy"), "payload_on": ON, "payload_off": OFF,
             "state_on": ON, "state_off": OFF, "icon": "mdi:eye-off"},
        ),
        (
            "button",
            "snapshot_now",
            {"name": "Snapshot now", "command_topic": t.command("snapshot_now"),
             "payload_press": PRESS, "icon": "mdi:camera"},
        ),
        (
            "event",
            "face_event",
            {"name": "Face event" if not labels else "Event", "state_topic": t.events,
             "event_types": list(EVENT_TYPES), "icon": "mdi:account-eye"},
        ),
    ]  # fmt: skip


def discovery_messages(
    t: Topics, camera: str, prefix: str, labels: tuple[str, ...] = ()
) -> list[tuple[str, dict[str, Any]]]:
    """(topic, payload) of every discovery config message, to publish retained. Every event
    carries its ``label`` (face, person, car, dog, cat) in the event entity's attributes."""
    node = f"veilcam_{camera}"
    out = []
    for component, key, conf in entities(t, labels):
        payload = {
            **conf,
            "unique_id": f"{node}_{key}",
            "availability_topic": t.availability,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device_block(camera),
            "origin": ORIGIN,
        }
        if component in ("switch", "button"):
            payload["qos"] = 1  # commands from Home Assistant: at least once
        out.append((f"{prefix}/{component}/{node}/{key}/config", payload))
    return out
