"""Config: strict validation, and every error names file, line and field."""

from pathlib import Path

import pytest

from daemon.cli import main
from daemon.config import Config, ConfigError, load, parse


def test_documented_default_config_loads(repo_dir: Path) -> None:
    cfg = load(repo_dir / "config.yaml")
    assert isinstance(cfg, Config)


def test_unknown_key_is_rejected_with_its_line() -> None:
    text = "camera:\n  name: door\n  resolution: 4k\n"
    with pytest.raises(ConfigError) as err:
        parse(text, "cfg.yaml")
    assert err.value.problems == ["cfg.yaml:3: camera.resolution: unknown key"]


def test_bad_value_names_field_and_line() -> None:
    text = "mask:\n  style: blur\n  margin: 0.2\n"
    with pytest.raises(ConfigError) as err:
        parse(text, "cfg.yaml")
    (problem,) = err.value.problems
    assert problem.startswith("cfg.yaml:3: mask.margin:")


def test_yaml_syntax_error_has_a_line() -> None:
    with pytest.raises(ConfigError) as err:
        parse("camera:\n  name: [door\n", "cfg.yaml")
    assert err.value.problems[0].startswith("cfg.yaml:")


def test_check_config_command_exits_non_zero(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("recording:\n  mode: sometimes\n")
    assert main(["check-config", str(bad)]) == 1
    assert f"{bad}:2: recording.mode:" in capsys.readouterr().err
