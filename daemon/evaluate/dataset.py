"""Annotated face sets laid out like ``wider_val_public``: ``images/`` + ``annotations.jsonl``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]
    invalid: bool
    settings: frozenset[str]  # of "easy", "medium", "hard" (all three when not given)


@dataclass(frozen=True)
class Sample:
    image: str  # relative to images/
    path: Path
    faces: tuple[Face, ...]


class DatasetError(Exception):
    """A data set folder that is not laid out as expected; the message names the file."""


def _face(f: dict[str, Any]) -> Face:
    flags = [k for k in ("easy", "medium", "hard") if k in f]
    settings = (
        frozenset(k for k in flags if f[k]) if flags else frozenset(("easy", "medium", "hard"))
    )
    x, y, w, h = (float(v) for v in f["box"])
    return Face((x, y, w, h), bool(f.get("invalid", 0)), settings)


def load(root: Path) -> list[Sample]:
    """Every sample of the data set at ``root``."""
    ann = root / "annotations.jsonl"
    if not ann.is_file():
        raise DatasetError(f"{ann}: not found (expected images/ and annotations.jsonl)")
    out = []
    for n, line in enumerate(ann.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            faces = tuple(_face(f) for f in d.get("faces", []))
            out.append(Sample(d["image"], root / "images" / d["image"], faces))
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{ann}:{n}: bad annotation: {exc}") from None
    return out


def iter_samples(root: Path, limit: int | None = None) -> Iterator[Sample]:
    samples = load(root)
    yield from samples[:limit] if limit else samples
