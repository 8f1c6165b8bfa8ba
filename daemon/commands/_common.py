"""Config loading shared by ``veilcam mask`` and ``veilcam eval``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from daemon.config import Config, ConfigError, load, parse

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.yaml"


def _set(doc: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = doc
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def load_config(path: str | None, overrides: list[str] | None = None) -> Config | None:
    """The config from ``path`` (defaults when None) with ``KEY=YAML`` overrides applied.

    Prints every problem (file, line, field) and returns None when the config is not valid.
    """
    try:
        if not overrides:
            return load(path) if path else Config()
        text = Path(path).read_text(encoding="utf-8") if path else ""
        doc = yaml.safe_load(text) or {}
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep:
                print(f"--set {item}: expected KEY=VALUE", file=sys.stderr)
                return None
            _set(doc, key.strip(), yaml.safe_load(raw))
        return parse(yaml.safe_dump(doc), f"{path or '<defaults>'} + --set")
    except (ConfigError, OSError, yaml.YAMLError) as exc:
        problems = getattr(exc, "problems", [str(exc)])
        for line in problems:
            print(line, file=sys.stderr)
        return None
