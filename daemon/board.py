"""Which board the daemon runs on: the schedule that fits a Pi 5 does not fit a Pi 4.

Read once at start from the device tree (``/proc/device-tree/model``, NUL-terminated text on
every Raspberry Pi and Jetson; absent on x86). Anything unknown is ``generic``. The kind is
logged with the camera's size and rate and published in the stats, so an owner's report of
"frames obscured" says what hardware it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MODEL_FILE = Path("/proc/device-tree/model")
Kind = Literal["pi5", "pi4", "jetson", "generic"]


@dataclass(frozen=True, slots=True)
class Board:
    kind: Kind
    model: str  # as the device tree names it ("" when there is none)


def kind_of(model: str) -> Kind:
    if model.startswith("Raspberry Pi 5") or "Compute Module 5" in model:
        return "pi5"
    if model.startswith("Raspberry Pi 4") or "Compute Module 4" in model or "Pi 400" in model:
        return "pi4"
    if "Jetson" in model or model.startswith("NVIDIA"):
        return "jetson"
    return "generic"


def read_board(path: Path = MODEL_FILE) -> Board:
    try:
        raw = path.read_bytes()[:256]
    except OSError:
        return Board("generic", "")
    model = raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()
    return Board(kind_of(model), model)
