"""Load and validate ``config.yaml``.

Validation is strict (unknown keys are errors) and every error names the file, the line and the
dotted field, e.g. ``/etc/veilcam/config.yaml:12: mask.margin: Input should be >= 1``. A config
that fails to load raises :class:`ConfigError`; callers that already run keep their old config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from daemon.capture.config import CameraConfig
from daemon.detect.config import DetectConfig
from daemon.escrow import PRIVATE_MARKER
from daemon.escrow.config import EscrowConfig
from daemon.gate import GateConfig
from daemon.mask.config import MaskConfig
from daemon.mqtt.config import MQTTConfig
from daemon.record.config import RecordingConfig
from daemon.schema import StrictModel
from daemon.track.config import TrackConfig
from daemon.yamlload import YAMLProblem, load_yaml, read_text

DEFAULT_PATH = Path("/etc/veilcam/config.yaml")


class LoggingConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(StrictModel):
    camera: CameraConfig = Field(default_factory=CameraConfig)
    detect: DetectConfig = Field(default_factory=DetectConfig)
    track: TrackConfig = Field(default_factory=TrackConfig)
    mask: MaskConfig = Field(default_factory=MaskConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    escrow: EscrowConfig = Field(default_factory=EscrowConfig)
    mqtt: MQTTConfig = Field(default_factory=MQTTConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)


class ConfigError(Exception):
    """A config that cannot be used. ``problems`` holds one ``file:line: field: message`` each."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problems))


def _line_index(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    """Record the 1-based line of every key and item, keyed by its path in the document."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[(*path, key)] = key_node.start_mark.line + 1
            _line_index(value_node, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = item.start_mark.line + 1
            _line_index(item, (*path, i), out)


def _line_for(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int:
    """The line of the deepest part of ``loc`` present in the file (1 if none is)."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


def _private_keys(value: Any, loc: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Where in the document a value holds a pasted escrow private key."""
    if isinstance(value, str):
        return [loc] if PRIVATE_MARKER in value else []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _private_keys(v, (*loc, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _private_keys(v, (*loc, i))]
    return []


def parse(text: str, source: str = "<config>") -> Config:
    """Parse and validate config text; ``source`` is the file name used in messages."""
    try:
        data, node = load_yaml(text)
    except YAMLProblem as exc:
        raise ConfigError(source, [f"{source}:{exc.line}: {exc.field}: {exc.message}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [f"{source}:1: (top level): expected a mapping of sections"])
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _line_index(node, (), lines)
    secret = [
        f"{source}:{_line_for(loc, lines)}: {'.'.join(map(str, loc))}: an escrow PRIVATE key "
        "must never be on the box; only the public key (escrow.pub) belongs here"
        for loc in _private_keys(data, ())
    ]
    if secret:
        raise ConfigError(source, secret)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # pydantic adds union/choice tags to loc; keep only what exists in the document
            loc = tuple(
                p for p in err["loc"] if isinstance(p, int) or not str(p).startswith("function-")
            )
            field = ".".join(str(p) for p in loc) or "(top level)"
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "value_error":
                msg = msg.removeprefix("Value error, ")
            problems.append(f"{source}:{_line_for(loc, lines)}: {field}: {msg}")
        raise ConfigError(source, problems) from None


def load(path: str | Path) -> Config:
    """Read and validate a config file. Raises ConfigError naming file, line and field."""
    p = Path(path)
    try:
        text = read_text(p)
    except OSError as exc:
        raise ConfigError(str(p), [f"{p}:0: (file): {exc.strerror or exc}"]) from None
    except YAMLProblem as exc:
        raise ConfigError(str(p), [f"{p}:{exc.line}: {exc.field}: {exc.message}"]) from None
    return parse(text, str(p))
