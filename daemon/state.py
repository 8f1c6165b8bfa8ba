"""What survives a restart: the operator switches (privacy mode, recording on/off) and the face
event that was open, so that the next start can end it (a crash never sends its ``end``).

Kept in a small JSON file (``recording.state_file``, default ``<recording.path>/../state.json``)
written atomically, so a power cut leaves either the old or the new state, never a torn file.
A missing file means the defaults (privacy off, recording on); an unreadable one turns privacy
mode on (it may have been on) and says so in the log.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from daemon.logs import fields

log = logging.getLogger(__name__)


@dataclass
class Switches:
    privacy: bool = False
    recording: bool = True


class StateStore:
    """Load once, save on every change. Thread-safe."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.open_events: dict[str, dict[str, Any]] = {}  # label -> its open event
        self.switches = self._load()

    def _load(self) -> Switches:
        if self.path is None or not self.path.exists():
            return Switches()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            found = data.get("open_events")
            found = list(found.values()) if isinstance(found, dict) else []
            found.append(data.get("open_event"))  # written by versions with one open event
            for ev in found:
                if isinstance(ev, dict) and isinstance(ev.get("id"), str):
                    self.open_events[str(ev.get("label", "face"))] = ev
            return Switches(
                privacy=bool(data.get("privacy", False)),
                recording=bool(data.get("recording", True)),
            )
        except (OSError, ValueError, AttributeError) as exc:
            # fail closed: privacy mode may have been on; the operator switches it off again
            log.error(
                "state file unreadable: privacy mode ON until switched off",
                extra=fields(path=self.path, error=exc),
            )
            return Switches(privacy=True)

    def update(self, **changes: bool) -> Switches:
        with self._lock:
            for k, v in changes.items():
                setattr(self.switches, k, bool(v))
            self._save()
            return Switches(**asdict(self.switches))

    def set_open_event(self, label: str, event: dict[str, Any] | None) -> None:
        """Remember ``label``'s open event (None once it has ended); saved at once."""
        with self._lock:
            if event is not None:
                self.open_events[label] = dict(event)
            elif self.open_events.pop(label, None) is None:
                return
            self._save()

    def take_open_events(self) -> list[dict[str, Any]]:
        """The events a previous run left open, one per label (cleared and saved)."""
        with self._lock:
            evs, self.open_events = list(self.open_events.values()), {}
            if evs:
                self._save()
            return evs

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({**asdict(self.switches), "open_events": self.open_events}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:  # a full or read-only disk must not stop the switch itself
            log.error("cannot save state", extra=fields(path=self.path, error=exc))
