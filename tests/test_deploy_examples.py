"""The example configs in deploy/examples are valid and open the network only to their peers."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from daemon import netpolicy
from daemon.commands import check_config
from daemon.config import load

EXAMPLES = Path(__file__).resolve().parent.parent / "deploy" / "examples"


@pytest.mark.parametrize("name", ["pi-camera.yaml", "rtsp-camera.yaml"])
def test_example_passes_check_config(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    check_config.add_arguments(parser)
    assert check_config.run(parser.parse_args([str(EXAMPLES / name)])) == 0
    assert capsys.readouterr().err == ""


def test_examples_peers() -> None:
    pi = netpolicy.wanted_peers(load(EXAMPLES / "pi-camera.yaml"))
    assert pi == [("mqtt", "192.168.1.10", 1883)]
    rtsp = netpolicy.wanted_peers(load(EXAMPLES / "rtsp-camera.yaml"))
    assert rtsp == [("mqtt", "192.168.1.10", 1883), ("camera", "192.168.1.50", 554)]


def test_example_lan_file_parses() -> None:
    nets = netpolicy.read_lan(EXAMPLES / "lan-networks")
    assert [str(n) for n in nets] == ["192.168.1.0/24", "fe80::/10"]
