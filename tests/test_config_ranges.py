"""Every number in the config has a range; values the daemon cannot use fail validation.

The walk covers every numeric value of every config model (through the JSON schema pydantic
derives from them), so a new number without bounds fails here. ``mask.color: [300, -5, 0]``
and a zone point of 99999999999999999999 used to pass ``check-config`` and kill the daemon on
its first frame (OverflowError); ``deadline_ms: 1e308`` or ``.inf`` passed as well.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.commands import check_config
from daemon.config import Config


def numbers(node: Any, defs: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict]]:
    """(dotted path, schema) of every integer/number in a JSON schema, through $refs."""
    if isinstance(node, dict):
        if "$ref" in node:
            yield from numbers(defs[node["$ref"].rsplit("/", 1)[1]], defs, path)
            return
        if node.get("type") in ("integer", "number"):
            yield path, node
        for key in ("anyOf", "allOf", "oneOf", "prefixItems"):
            for i, sub in enumerate(node.get(key, [])):
                yield from numbers(sub, defs, f"{path}[{i}]" if key == "prefixItems" else path)
        if isinstance(node.get("items"), dict):
            yield from numbers(node["items"], defs, f"{path}[]")
        for name, sub in node.get("properties", {}).items():
            yield from numbers(sub, defs, f"{path}.{name}" if path else name)


def test_every_number_in_every_config_model_has_both_bounds() -> None:
    schema = Config.model_json_schema()
    found = list(numbers(schema, schema["$defs"]))
    assert len(found) > 50  # the walk reaches every section
    unbounded = [
        p
        for p, s in found
        if not ({"minimum", "exclusiveMinimum"} & s.keys())
        or not ({"maximum", "exclusiveMaximum"} & s.keys())
    ]
    assert unbounded == []


def check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    parser = argparse.ArgumentParser()
    check_config.add_arguments(parser)
    code = check_config.run(parser.parse_args([str(cfg)]))
    return code, capsys.readouterr().err.replace(str(cfg), "c.yaml")


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("mask:\n  color: [300, -5, 0]\n", ["c.yaml:2: mask.color.0:", "c.yaml:2: mask.color.1:"]),
        (
            "mask:\n  zones:\n    - points: [[0, 0], [99999999999999999999, 0], [5, 5]]\n",
            ["c.yaml:3: mask.zones.0.points.1.0: Input should be less than or equal to 100000"],
        ),
        ("gate:\n  deadline_ms: 1e308\n", ["c.yaml:2: gate.deadline_ms: Input should be less"]),
        ("gate:\n  deadline_ms: .inf\n", ["c.yaml:2: gate.deadline_ms: Input should be a finite"]),
        ("track:\n  hold_s: .nan\n", ["c.yaml:2: track.hold_s: Input should be a finite"]),
        ("recording:\n  segment_s: 1e308\n", ["c.yaml:2: recording.segment_s: Input should be"]),
        ("recording:\n  retain_days: 1e308\n", ["c.yaml:2: recording.retain_days: Input should"]),
        ("recording:\n  max_gb: -.inf\n", ["c.yaml:2: recording.max_gb: Input should be"]),
        ("camera:\n  fps: 1e30\n", ["c.yaml:2: camera.fps: Input should be"]),
        ("detect:\n  schedule:\n    tile_scales: [.inf]\n", ["c.yaml:3: detect.schedule.tile"]),
    ],
)
def test_values_the_daemon_cannot_use_are_refused_with_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expect: list[str]
) -> None:
    code, err = check(tmp_path, text, capsys)
    assert code == 1
    for e in expect:
        assert e in err, err


def test_the_bounds_allow_what_config_yaml_documents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edge = (
        "mask:\n  color: [255, 0, 255]\n  zones:\n    - points: [[0, 0], [100000, 0], [0, 9]]\n"
        "gate:\n  deadline_ms: 10000\ntrack:\n  hold_s: 0\nrecording:\n  retain_days: 3650\n"
    )
    assert check(tmp_path, edge, capsys)[0] == 0
