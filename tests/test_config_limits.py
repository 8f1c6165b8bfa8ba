"""Configs that YAML or pydantic accept but veilcam must not: driven through the real commands.

Duplicate keys, control characters that reach generated unit files, alias bombs, non-UTF-8
bytes, deep nesting: each is refused with file, line and field, quickly and in little memory,
and never as a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon import netpolicy

REPO = Path(__file__).resolve().parent.parent
VEILCAM = [sys.executable, "-m", "daemon"]


def veilcam(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    return subprocess.run(
        [*VEILCAM, *args], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def refused(p: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert p.returncode == code, p.stdout + p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    assert "ok" not in p.stdout
    return p.stderr


ZONE = "mask:\n  zones:\n    - name: neighbour\n      points: [[0, 0], [100, 0], [100, 80]]\n"


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        # the privacy zone silently gone: a second `mask:` section used to win
        (ZONE + "recording:\n  mode: events\nmask:\n  style: mosaic\n",
         ":7: mask: duplicate key (first at line 1)"),
        (ZONE + "  zone_style: fill\n  zone_style: blur\n",
         ":6: mask.zone_style: duplicate key (first at line 5)"),
        ("mask:\n  zones:\n    - points: [[0, 0], [9, 0], [9, 9]]\n      name: a\n      name: b\n",
         ":5: mask.zones.0.name: duplicate key (first at line 4)"),
    ],
)  # fmt: skip
def test_duplicate_keys_are_refused_with_both_lines(tmp_path: Path, text: str, expect: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert f"{cfg}{expect}" in refused(veilcam("check-config", str(cfg)))


def test_control_characters_in_paths_never_reach_the_unit_drop_in(tmp_path: Path) -> None:
    """A newline in recording.path used to write `IPAddressAllow=any` and an ExecStartPre=+."""
    cfg = tmp_path / "etc/veilcam/config.yaml"
    cfg.parent.mkdir(parents=True)
    evil = "/mnt/usb\\nIPAddressAllow=any\\nExecStartPre=+/bin/sh -c id"
    cfg.write_text(f'mqtt:\n  host: 192.0.2.10\nrecording:\n  path: "{evil}"\n')
    err = refused(veilcam("check-config", "--apply-network", "--root", str(tmp_path), str(cfg)))
    assert f"{cfg}:4: recording.path: control character U+000A is not allowed" in err
    assert not (tmp_path / netpolicy.PATHS_DROPIN).exists()
    assert not (tmp_path / netpolicy.DROPIN).exists()
    # every name and path is checked, not only recording.path
    for text, field in [
        ('camera:\n  source: "rtsp://cam\\r/x"\n', ":2: camera.source"),
        ('mqtt:\n  host: "broker\\u2028x"\n', ":2: mqtt.host"),
        ('recording:\n  state_file: "/a\\x1bb"\n', ":2: recording.state_file"),
        ('mask:\n  zones:\n    - name: "a\\tb"\n      points: [[0, 0], [1, 0], [1, 1]]\n',
         ":3: mask.zones.0.name"),
    ]:  # fmt: skip
        cfg.write_text(text)
        assert f"{cfg}{field}: control character" in refused(veilcam("check-config", str(cfg)))


def test_paths_with_spaces_quotes_and_percent_are_quoted_for_systemd(tmp_path: Path) -> None:
    cfg = tmp_path / "etc/veilcam/config.yaml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text("mqtt:\n  host: 192.0.2.10\nrecording:\n  path: '/mnt/usb disk/\"a\" 100%'\n")
    p = veilcam("check-config", "--apply-network", "--root", str(tmp_path), str(cfg))
    assert p.returncode == 0, p.stderr
    lines = (tmp_path / netpolicy.PATHS_DROPIN).read_text().splitlines()
    assert 'ReadWritePaths="-/mnt/usb disk/\\"a\\" 100%%"' in lines  # systemd-analyze: see CI


def test_a_config_file_name_with_a_newline_is_not_written_into_the_ruleset(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "etc/veilcam/con\nfig.yaml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text("mqtt:\n  host: 192.0.2.10\n")
    p = veilcam("check-config", "--apply-network", "--root", str(tmp_path), str(cfg))
    assert p.returncode == 1 and "control character U+000A" in p.stderr, p.stderr
    assert not (tmp_path / netpolicy.RULESET).exists()


def alias_bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_quickly_in_little_memory(tmp_path: Path) -> None:
    """9 levels of 9 aliases (9^9 nodes) ran check-config to 8.9 GB before it was killed."""
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(alias_bomb())
    # measure the command alone: a wrapper whose only child it is; 2 GB address space at most,
    # so that a regression fails here instead of taking the machine's memory
    probe = (
        "import resource, subprocess, sys, time\n"
        "lim = lambda: resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "t = time.monotonic()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True, preexec_fn=lim)\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(p.returncode, rss, round(time.monotonic() - t, 2))\n"
        "sys.stderr.write(p.stderr)\n"
    )
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-c", probe, *VEILCAM, "check-config", str(cfg)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert time.monotonic() - t0 < 30
    code, rss_kb, seconds = p.stdout.split()
    assert int(code) == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert f"{cfg}:" in p.stderr and "aliases" in p.stderr, p.stderr
    assert int(rss_kb) < 200 * 1024, f"check-config peaked at {int(rss_kb) // 1024} MB"
    assert float(seconds) < 10


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_non_utf8_and_deep_nesting_are_clear_errors(tmp_path: Path, command: str) -> None:
    code = 1 if command == "check-config" else 2  # check-config: invalid; run: exit 2 (config)
    cases = [
        (b'camera:\n  name: door\n  source: "caf\xe9.mp4"\n', ":3: (file): not UTF-8 text"),
        (b"camera: " + b"[" * 5000 + b"]" * 5000 + b"\n", ":1: (yaml): nested deeper than"),
        (b"mask:\n  " + b"{a: " * 5000 + b"1" + b"}" * 5000 + b"\n", ":2: (yaml): nested deeper"),
        (b"camera:\n  name: a\x00b\n", ":2: (yaml): character U+0000 not allowed"),
        (b"a: &a [*a]\n", ":1: a.0: recursive alias"),
        (b"# " + b"x" * (2 << 20) + b"\n", ":0: (file): larger than"),
    ]
    for raw, expect in cases:
        cfg = tmp_path / "c.yaml"
        cfg.write_bytes(raw)
        args = [command, str(cfg)] if command == "check-config" else [command, "--config", str(cfg)]
        err = refused(veilcam(*args), code)
        assert f"{cfg}{expect}" in err, err


def test_mask_with_set_overrides_reads_the_file_through_the_same_bounds(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(ZONE + "mask:\n  style: mosaic\n")
    out = ["-o", str(tmp_path / "out"), str(tmp_path / "x.jpg")]
    p = veilcam("mask", "--config", str(cfg), "--set", "mask.margin=1.5", *out)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert f"{cfg}:5: mask: duplicate key (first at line 1)" in p.stderr, p.stderr
