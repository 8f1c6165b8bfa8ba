"""Presence events per label (face, person, car, dog, cat): start, update, end.

The pipeline steps them once per emitted frame with the tracked boxes in it. An event starts
when a label's first track appears, updates when the count changes and ends when the last one
is gone (tracks outlive a detection by ``track.hold_s``, so a face turning away for a moment
does not end its event). Events go to the listeners (MQTT) and drive the recorder's events
mode; the open ones are kept in the state file, so that a crash's are ended, ``interrupted``,
at the next start and Home Assistant's sensors and automations do not wait forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from daemon.events import PipelineListener
from daemon.logs import fields
from daemon.state import StateStore
from daemon.track.tracker import TrackedBox

log = logging.getLogger("daemon.pipeline")  # the pipeline's own log stream, as before


class LabelEvents:
    """Turns one label's per-frame track counts into start/update/end events."""

    def __init__(self, camera: str, label: str = "face") -> None:
        self.camera = camera
        self.label = label
        self.current: dict[str, Any] | None = None
        self._n = 0

    def step(self, count: int, track_ids: list[int], when: float) -> dict[str, Any] | None:
        cur = self.current
        if cur is None:
            if count == 0:
                return None
            self._n += 1
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
            kind = "" if self.label == "face" else f"{self.label}-"
            cur = {
                "type": "start",
                "id": f"{self.camera}-{kind}{stamp}-{self._n}",
                "label": self.label,
                "count": count,
                "max_count": count,
                "track_ids": track_ids,
                "start": when,
                "time": when,
                "end": None,
                "camera": self.camera,
            }
            self.current = cur
            return dict(cur)
        if count == cur["count"]:
            return None
        cur.update(count=count, track_ids=track_ids, time=when)
        cur["max_count"] = max(cur["max_count"], count)
        if count == 0:
            cur.update(type="end", end=when)
            self.current = None
            return dict(cur)
        cur["type"] = "update"
        return dict(cur)


class EventStreams:
    """The face events and one stream per object label, sent to the listeners."""

    def __init__(
        self,
        camera: str,
        labels: Iterable[str],
        state: StateStore,
        listeners: Callable[[], Sequence[PipelineListener]],
    ) -> None:
        self.streams = [LabelEvents(camera), *(LabelEvents(camera, label) for label in labels)]
        self.state = state
        self._listeners = listeners

    def active(self) -> bool:
        """Some label's event is open (the recorder's events mode records meanwhile)."""
        return any(e.current is not None for e in self.streams)

    def step(self, boxes: Sequence[TrackedBox], when: float) -> None:
        """One emitted frame's tracked boxes, at wall-clock ``when``."""
        for events in self.streams:
            mine = [b.track_id for b in boxes if b.label == events.label]
            ev = events.step(len(mine), sorted(mine), when)
            if ev is not None:
                self.send(ev)

    def end_all(self, when: float) -> None:
        """The pipeline stops: every open event ends."""
        for events in self.streams:
            if events.current is not None:
                ev = events.step(0, [], when)
                if ev is not None:
                    self.send(ev)

    def end_interrupted(self) -> None:
        """A crash (kill -9, power cut) left events open in the state file: end each now,
        marked ``interrupted``."""
        now = time.time()
        for ev in self.state.take_open_events():
            ev.update(type="end", count=0, track_ids=[], time=now, end=now, interrupted=True)
            self.send(ev)

    def send(self, ev: dict[str, Any]) -> None:
        # the state file keeps each label's open event: a crash's are ended at the next start
        if ev["type"] in ("start", "end"):
            self.state.set_open_event(ev["label"], ev if ev["type"] == "start" else None)
        level = logging.DEBUG if ev["type"] == "update" else logging.INFO
        log.log(
            level, f"{ev['label']} event {ev['type']}", extra=fields(id=ev["id"], count=ev["count"])
        )
        for listener in self._listeners():
            try:
                listener.on_event(ev)
            except Exception:
                log.exception("listener failed", extra=fields(listener=type(listener).__name__))
