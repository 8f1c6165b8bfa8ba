"""Config loading shared by ``veilcam mask`` and ``veilcam eval``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from daemon.config import Config, ConfigError, load, parse
from daemon.yamlload import YAMLProblem, load_yaml, read_text

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
        source = path or "--set"
        text = read_text(Path(path)) if path else ""  # bounded as for every config
        doc = load_yaml(text)[0] or {}
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep:
                print(f"--set {item}: expected KEY=VALUE", file=sys.stderr)
                return None
            source = f"--set {item}"
            _set(doc, key.strip(), load_yaml(raw)[0])
        return parse(yaml.safe_dump(doc), f"{path or '<defaults>'} + --set")
    except YAMLProblem as exc:
        print(f"{source}:{exc.line}: {exc.field}: {exc.message}", file=sys.stderr)
        return None
    except (ConfigError, OSError, yaml.YAMLError) as exc:
        problems = getattr(exc, "problems", [str(exc)])
        for line in problems:
            print(line, file=sys.stderr)
        return None
