"""The network allow-lists rendered from config.yaml, and the systemd unit checks CI runs.

``check-config --apply-network`` is driven through its own argument parser, as install.sh does.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import subprocess
from pathlib import Path

import pytest

from daemon import netpolicy
from daemon.commands import check_config
from daemon.config import parse

REPO = Path(__file__).resolve().parent.parent


def check(root: Path, config_text: str, *flags: str) -> int:
    cfg = root / "etc/veilcam/config.yaml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(config_text)
    parser = argparse.ArgumentParser()
    check_config.add_arguments(parser)
    return check_config.run(parser.parse_args([*flags, "--root", str(root), str(cfg)]))


def allowed(dropin: str) -> list[str]:
    return [ln.split("=", 1)[1] for ln in dropin.splitlines() if ln.startswith("IPAddressAllow=")]


def test_apply_network_writes_the_broker_and_camera_addresses(tmp_path: Path) -> None:
    text = (
        "mqtt:\n  host: 192.0.2.10\n  port: 8883\ncamera:\n  source: rtsp://u:pw@[2001:db8::5]/s\n"
    )
    assert check(tmp_path, text, "--apply-network") == 0
    dropin = (tmp_path / netpolicy.DROPIN).read_text()
    assert allowed(dropin) == ["", "192.0.2.10", "2001:db8::5"]  # reset, then the peers
    ruleset = (tmp_path / netpolicy.RULESET).read_text()
    assert "192.0.2.10 . 8883" in ruleset
    assert "2001:db8::5 . 554" in ruleset
    assert "pw" not in dropin + ruleset
    assert "@@" not in ruleset


def test_check_config_alone_writes_nothing(tmp_path: Path) -> None:
    assert check(tmp_path, "mqtt:\n  host: 192.0.2.10\n") == 0
    assert not (tmp_path / netpolicy.DROPIN).exists()


def test_invalid_config_or_unresolvable_broker_keeps_the_old_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(tmp_path, "mqtt:\n  host: 192.0.2.10\n", "--apply-network") == 0
    before = {p: (tmp_path / p).read_text() for p in (netpolicy.DROPIN, netpolicy.RULESET)}

    assert check(tmp_path, "mqtt:\n  host: 192.0.2.11\n  port: 0\n", "--apply-network") == 1
    assert "mqtt.port" in capsys.readouterr().err
    # .invalid never resolves (RFC 6761), without asking any server
    assert check(tmp_path, "mqtt:\n  host: broker.invalid\n", "--apply-network") == 1
    assert "cannot resolve 'broker.invalid'" in capsys.readouterr().err
    assert {p: (tmp_path / p).read_text() for p in before} == before


def test_dns_servers_are_allowed_only_for_a_broker_given_by_name(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / netpolicy.RESOLV_CONF).write_text("search lan\nnameserver 192.0.2.53\n")
    fake = {"broker.lan": ["192.0.2.10"], "ha.local": ["192.0.2.11"], "localhost": ["127.0.0.1"]}

    def resolver(host: str, port: int) -> list[netpolicy.IPAddress]:
        return [ipaddress.ip_address(a) for a in fake.get(host, [host])]

    def allow_for(host: str) -> list[str]:
        res = netpolicy.apply(
            parse(f"mqtt:\n  host: {host}\n"), tmp_path, resolver=resolver, touch_system=False
        )
        return allowed(res.dropin.read_text())[1:]

    assert allow_for("192.0.2.10") == ["192.0.2.10"]
    assert allow_for("broker.lan") == ["192.0.2.10", "192.0.2.53"]  # the daemon looks it up
    assert allow_for("ha.local") == ["192.0.2.11"]  # mDNS goes through avahi's UNIX socket
    assert allow_for("localhost") == ["127.0.0.1"]  # /etc/hosts
    ruleset = (tmp_path / netpolicy.RULESET).read_text()
    assert "udp dport 5353 counter name dropped_out drop" in ruleset
    allow_for("ha.local")
    assert "udp dport 5353 accept" in (tmp_path / netpolicy.RULESET).read_text()


def test_recordings_outside_the_data_dir_are_made_writable(tmp_path: Path) -> None:
    res = netpolicy.apply(parse("mqtt:\n  host: 192.0.2.10\n"), tmp_path, touch_system=False)
    assert "ReadWritePaths" not in res.paths_dropin.read_text()
    cfg = parse("mqtt:\n  host: 192.0.2.10\nrecording:\n  path: /mnt/usb/veilcam/recordings\n")
    res = netpolicy.apply(cfg, tmp_path, touch_system=False)
    lines = res.paths_dropin.read_text().splitlines()
    assert [ln for ln in lines if ln.startswith("ReadWritePaths=")] == [
        'ReadWritePaths="-/mnt/usb/veilcam/recordings"',
        'ReadWritePaths="-/mnt/usb/veilcam"',  # the privacy/recording switches' state file
    ]


def test_no_peer_allows_nothing(tmp_path: Path) -> None:
    cfg = parse("mqtt:\n  enabled: false\ncamera:\n  source: /dev/video0\n")
    res = netpolicy.apply(cfg, tmp_path, touch_system=False)
    assert res.peers == []
    assert allowed(res.dropin.read_text()) == [""]


def test_lan_file_sets_who_may_ssh_in(tmp_path: Path) -> None:
    lan = tmp_path / "lan-networks"
    assert netpolicy.read_lan(lan) == netpolicy.DEFAULT_LAN
    lan.write_text("# home\n192.168.7.0/24\n2001:db8:7::/48  # our IPv6 prefix\n")
    nets = netpolicy.read_lan(lan)
    assert [str(n) for n in nets] == ["192.168.7.0/24", "2001:db8:7::/48"]
    text = netpolicy.render_ruleset(netpolicy.TEMPLATE_SOURCE.read_text(), [], nets)
    assert "elements = { 192.168.7.0/24 }" in text
    assert "10.0.0.0/8" not in text
    lan.write_text("192.168.7.0/33\n")
    with pytest.raises(netpolicy.NetPolicyError, match="lan-networks:1"):
        netpolicy.read_lan(lan)
    lan.write_text("# nobody\n")
    with pytest.raises(netpolicy.NetPolicyError, match="no network"):
        netpolicy.read_lan(lan)


def test_ssh_ports_come_from_sshd_config(tmp_path: Path) -> None:
    sshd = tmp_path / "etc/ssh/sshd_config"
    assert netpolicy.read_ssh_ports(sshd) == [22]
    (sshd.parent / "sshd_config.d").mkdir(parents=True)
    sshd.write_text("Include /etc/ssh/sshd_config.d/*.conf\n#Port 22\nPort 2222\nMatch User x\n")
    (sshd.parent / "sshd_config.d/extra.conf").write_text("Port 22\n")
    assert netpolicy.read_ssh_ports(sshd) == [22, 2222]
    res = netpolicy.apply(parse("mqtt:\n  host: 192.0.2.10\n"), tmp_path, touch_system=False)
    assert "tcp dport { 22, 2222 } ct state new accept" in res.ruleset.read_text()


def test_sessions_from_outside_the_lan_are_named() -> None:
    lan = [ipaddress.ip_network("192.168.1.0/24"), ipaddress.ip_network("fe80::/10")]
    seen = ["192.168.1.20", "100.64.0.7", "[::ffff:192.168.1.9]", "[fe80::1%eth0]", "127.0.0.1"]
    assert netpolicy.outside_lan(seen, lan) == ["100.64.0.7"]


def test_template_placeholders_are_all_known() -> None:
    with pytest.raises(netpolicy.NetPolicyError, match="BOGUS"):
        netpolicy.render_ruleset("x @@BOGUS@@", [])


def test_nft_rejects_a_broken_ruleset_before_anything_is_written(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("nft -c needs root (CI runs as root)")
    share = tmp_path / netpolicy.TEMPLATE_INSTALLED
    share.parent.mkdir(parents=True)
    share.write_text(netpolicy.TEMPLATE_SOURCE.read_text().replace("policy drop;", "policy dorp;"))
    with pytest.raises(netpolicy.NetPolicyError, match="nft rejected"):
        netpolicy.apply(parse("mqtt:\n  host: 192.0.2.10\n"), tmp_path, touch_system=False)
    assert not (tmp_path / netpolicy.DROPIN).exists()


def deploy_checks(*steps: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / ".ci/deploy-checks.sh"), *steps],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
        check=False,
    )


def test_units_verify_cleanly_and_expose_little() -> None:
    proc = deploy_checks("units", "scripts")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verify veilcam.service: ok" in proc.stdout
    exposure = float(proc.stdout.split("security veilcam.service: exposure ")[1].split()[0])
    assert exposure <= 2.0


def test_unit_checks_fail_on_a_warning_or_a_weak_unit(tmp_path: Path) -> None:
    unit = (REPO / "systemd/veilcam.service").read_text()
    typo = tmp_path / "typo"
    typo.mkdir()
    (typo / "veilcam.service").write_text(
        unit.replace("ProtectHome=yes", "ProtectHome=yes\nProtecHome=yes")
    )
    proc = deploy_checks("units", UNIT_DIR=str(typo))
    assert proc.returncode != 0
    assert "ProtecHome" in proc.stderr

    weak = tmp_path / "weak"
    weak.mkdir()
    keep = ("Type=", "Exec", "User=", "Group=", "[", "Description=", "WantedBy=")
    (weak / "veilcam.service").write_text(
        "\n".join(ln for ln in unit.splitlines() if ln.startswith(keep)) + "\n"
    )
    proc = deploy_checks("units", UNIT_DIR=str(weak))
    assert proc.returncode != 0
    assert "exposure" in proc.stderr
