"""What the running pipeline tells the outside world (MQTT, systemd), and how it is steered.

The pipeline calls every registered :class:`PipelineListener` from its output thread. Listeners
must return quickly and must not block (hand work to their own thread/queue): a slow listener
slows the recording. A listener that raises is logged and kept; it never stops the pipeline.

Event dicts (``on_event``) describe "a face is present" periods computed from the tracker::

    {"type": "start" | "update" | "end", "id": "camera-20261124-102920-1",
     "label": "face", "count": 2, "max_count": 3, "track_ids": [4, 7],
     "start": 1795000000.12, "time": 1795000003.40, "end": None | 1795000010.0,
     "camera": "camera"}

``start`` comes when the first track appears, ``update`` whenever the number of tracks changes,
``end`` when the last track expires (after ``track.hold_s``). Times are Unix seconds.

Stats dicts (``on_stats``, every ``STATS_PERIOD_S``) hold at least the keys of
:data:`STATS_KEYS`.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from daemon.frames import MaskedFrame

STATS_PERIOD_S = 2.0

SourceState = Literal["starting", "ok", "lost", "retrying", "ended"]

STATS_KEYS = (
    "fps",  # frames written/emitted per second over the last period
    "detect_fps",  # detector runs per second over the last period
    "detector_ms",  # median detector latency over the last period
    "faces",  # faces (tracks) in the newest emitted frame
    "frames_total",  # frames emitted since start
    "frames_obscured",  # frames the gate blanked (detection missing, late or failed) since start
    "frames_dropped",  # frames the gate or back-pressure dropped since start
    "detector_errors",  # failed detector runs since start
    "recording_bytes",  # bytes of recordings on disk for this camera
    "source_state",  # SourceState
    "recording",  # bool: recording switched on (set_recording)
    "privacy",  # bool: privacy mode on (set_privacy)
    "latency_ms",  # median capture -> emitted latency over the last period
    "escrow",  # the escrow key's fingerprint, or "off"
    "detect_profile",  # the detection profile in use (daemon/detect/profiles.py)
    "detect_profile_reason",  # why: each profile tried and its projection
    "board_overloaded",  # bool: the board cannot carry the camera even with that profile
    "projected_cpu_percent",  # the projection's share of the cores, or None (no projection)
)


@runtime_checkable
class PipelineListener(Protocol):
    """Receives what the pipeline emits. Every method must be quick and non-blocking."""

    def on_frame(self, frame: MaskedFrame, faces: int) -> None:
        """Every emitted (masked or obscured) frame, in order."""

    def on_event(self, event: dict[str, Any]) -> None:
        """Face-present start/update/end, see module doc."""

    def on_stats(self, stats: dict[str, Any]) -> None:
        """Periodic figures, see :data:`STATS_KEYS`."""


class PipelineControls(Protocol):
    """Thread-safe controls of a running pipeline (implemented by ``daemon.pipeline.Pipeline``).

    ``set_privacy`` and ``set_recording`` are persisted in ``<state_dir>/state.json`` (see
    ``daemon.state``) so they survive restarts.
    """

    def set_privacy(self, on: bool) -> None:
        """Privacy mode: every emitted frame is fully obscured (recording and snapshots too)."""

    def set_recording(self, on: bool) -> None:
        """Switch recording to disk on or off; listeners keep receiving frames."""

    def add_listener(self, listener: PipelineListener) -> None:
        """Register a listener; it receives frames, events and stats from then on."""

    @property
    def privacy(self) -> bool: ...

    @property
    def recording(self) -> bool: ...
