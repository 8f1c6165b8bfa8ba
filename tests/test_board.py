"""The board is read from the device tree as a Pi, a Jetson or anything else would give it."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.board import read_board


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"Raspberry Pi 5 Model B Rev 1.0\0", "pi5"),
        (b"Raspberry Pi 4 Model B Rev 1.5\0", "pi4"),
        (b"Raspberry Pi Compute Module 4 Rev 1.1\0", "pi4"),
        (b"Raspberry Pi 3 Model B Plus Rev 1.3\0", "generic"),
        (b"NVIDIA Jetson Orin Nano Developer Kit\0", "jetson"),
        (b"\xff\xfe junk\0", "generic"),
    ],
)
def test_device_tree_models(tmp_path: Path, raw: bytes, kind: str) -> None:
    f = tmp_path / "model"
    f.write_bytes(raw)
    b = read_board(f)
    assert b.kind == kind
    assert "\0" not in b.model


def test_no_device_tree_is_generic(tmp_path: Path) -> None:
    assert read_board(tmp_path / "absent").kind == "generic"
