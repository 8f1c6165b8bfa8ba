"""The appliance firewall, for real: two network namespaces joined by a veth pair.

``box`` plays the veilcam box and gets the ruleset rendered by ``check-config --apply-network``;
``lan`` plays the home network: a real mosquitto as the broker, other hosts and ports, and an
address outside the configured LAN. Every probe is first shown to pass without the ruleset, so a
blocked probe is the firewall's doing and not the lab's. Addresses are documentation ranges that
exist only inside these namespaces. Needs root, ``ip`` and ``nft`` (as CI has).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

import pytest

from daemon.config import parse
from daemon.netpolicy import IPAddress, apply

BROKER4, OTHER4, CAMERA4, OUTSIDER4, BOX4 = (
    "192.0.2.1",
    "192.0.2.9",
    "192.0.2.20",
    "198.51.100.7",
    "192.0.2.2",
)
BROKER6, OTHER6, BOX6 = "2001:db8:1::1", "2001:db8:1::9", "2001:db8:1::2"
NFT = shutil.which("nft") or "/usr/sbin/nft"
IP = shutil.which("ip") or "/usr/sbin/ip"

# Listens on every (proto, addr, port) given as JSON; TCP accepts and answers MQTT CONNECT with a
# CONNACK-like 4 bytes only when asked (the broker is the real mosquitto), UDP echoes.
LISTENER = r"""
import json, selectors, socket, sys
sel = selectors.DefaultSelector()
for proto, addr, port in json.loads(sys.argv[1]):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, port))
    if proto == "tcp":
        s.listen(16)
    sel.register(s, selectors.EVENT_READ, proto)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if key.data == "tcp":
            c, _ = s.accept()
            c.sendall(b"hi")
            c.close()
        else:
            data, peer = s.recvfrom(2048)
            s.sendto(data, peer)
"""

# Tries every probe at once (bounded: one short timeout each) and prints {name: ok} as JSON.
PROBE = r"""
import json, socket, sys, threading
CONNECT = bytes([0x10, 0x0c, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 0])
results = {}
def run(name, proto, src, dst, port, kind):
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.settimeout(float(sys.argv[2]))
    try:
        if src:
            s.bind((src, 0))
        if proto == "udp":
            s.sendto(b"ping", (dst, port))
            ok = s.recvfrom(64)[0] == b"ping"
        else:
            s.connect((dst, port))
            if kind == "mqtt":
                s.sendall(CONNECT)
                ok = s.recv(4)[:2] == bytes([0x20, 2])
            else:
                ok = s.recv(2) == b"hi"
    except OSError:
        ok = False
    finally:
        s.close()
    results[name] = ok
threads = [threading.Thread(target=run, args=p) for p in json.loads(sys.argv[1])]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(results))
"""


def sh(*cmd: str, ns: str | None = None) -> subprocess.CompletedProcess[str]:
    full = [IP, "netns", "exec", ns, *cmd] if ns else list(cmd)
    proc = subprocess.run(full, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(full)} failed: {proc.stderr.strip()}")
    return proc


@dataclass
class Lab:
    box: str
    lan: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, ns: str, argv: list[str], ready: str, timeout: float = 15.0) -> None:
        """Start a process in ``ns`` and wait until it prints ``ready`` (or fail)."""
        proc = subprocess.Popen(
            [IP, "netns", "exec", ns, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()  # raw reads: a buffered reader would hide lines from select()
        deadline = time.monotonic() + timeout
        seen = b""
        while ready.encode() not in seen and time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(fd, 4096) if r else b""
            if not chunk:
                break
            seen += chunk
        if ready.encode() in seen:
            return
        seen_text = seen.decode(errors="replace")
        raise AssertionError(f"{argv[0]} in {ns} did not get ready: {seen_text}")

    def probe(self, ns: str, probes: list[tuple], timeout: float = 1.5) -> dict[str, bool]:
        out = sh(sys.executable, "-c", PROBE, json.dumps(probes), str(timeout), ns=ns).stdout
        return json.loads(out)

    def counter(self, name: str) -> int:
        out = sh(NFT, "-j", "list", "counter", "inet", "veilcam", name, ns=self.box).stdout
        return next(
            item["counter"]["packets"] for item in json.loads(out)["nftables"] if "counter" in item
        )


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.fail("the firewall tests need root (network namespaces, nft); CI runs as root")
    for tool in (IP, NFT, "/usr/sbin/mosquitto"):
        if not Path(tool).exists():
            pytest.fail(f"{tool} not found (scripts/setup.sh installs it)")
    tag = f"vc{os.getpid() % 100000}"
    lab = Lab(box=f"{tag}-box", lan=f"{tag}-lan")
    try:
        sh(IP, "netns", "add", lab.box)
        sh(IP, "netns", "add", lab.lan)
        sh(IP, "link", "add", "vcbox0", "netns", lab.box, "type", "veth", "peer", "vclan0",
           "netns", lab.lan)  # fmt: skip
        for ns, dev, addrs in (
            (lab.box, "vcbox0", [f"{BOX4}/24", f"{BOX6}/64"]),
            (
                lab.lan,
                "vclan0",
                [f"{a}/24" for a in (BROKER4, OTHER4, CAMERA4, OUTSIDER4)]
                + [f"{a}/64" for a in (BROKER6, OTHER6)],
            ),
        ):
            for a in addrs:
                sh(IP, "addr", "add", a, "dev", dev, *(["nodad"] if ":" in a else []), ns=ns)
            sh(IP, "link", "set", "lo", "up", ns=ns)
            sh(IP, "link", "set", dev, "up", ns=ns)
        # the box answers the outsider directly on the link (there is no router in this lab)
        sh(IP, "route", "add", "198.51.100.0/24", "dev", "vcbox0", ns=lab.box)
        yield lab
    finally:
        for proc in lab.procs:
            proc.kill()
            proc.wait(timeout=10)
        for ns in (lab.box, lab.lan):
            subprocess.run([IP, "netns", "del", ns], capture_output=True, check=False)


def write_policy(root: Path) -> Path:
    """Render the ruleset as ``check-config --apply-network`` does, for a dual-stack broker name.

    The name is resolved by a stand-in resolver (this lab has no DNS server); the rest is the
    real code path, template included.
    """
    cfg = parse(
        "mqtt:\n  host: broker.test\n  port: 1883\n"
        f"camera:\n  source: rtsp://viewer:secret@{CAMERA4}:8554/stream\n"
    )
    (root / "etc/veilcam").mkdir(parents=True)
    (root / "etc/veilcam/lan-networks").write_text(
        "# the test LAN\n192.0.2.0/24\n2001:db8:1::/64\n"
    )

    def resolver(host: str, port: int) -> list[IPAddress]:
        if host == "broker.test":
            return [ip_address(BROKER4), ip_address(BROKER6)]
        return [ip_address(host)]

    result = apply(cfg, root, resolver=resolver, touch_system=False)
    assert "secret" not in result.ruleset.read_text()
    return result.ruleset


def start_services(lab: Lab, tmp_path: Path) -> None:
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"user root\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
        f"log_type notice\nlog_type information\nlistener 1883 {BROKER4}\nlistener 1883 {BROKER6}\n"
    )
    lab.start(lab.lan, ["/usr/sbin/mosquitto", "-c", str(conf)], ready="running")
    decoys = [
        ("tcp", BROKER4, 80),
        ("tcp", BROKER4, 8883),
        ("tcp", OTHER4, 1883),
        ("tcp", OTHER4, 443),
        ("tcp", OTHER4, 53),
        ("tcp", CAMERA4, 8554),
        ("tcp", CAMERA4, 554),
        ("tcp", OTHER6, 1883),
        ("tcp", BROKER6, 80),
        ("udp", OTHER4, 53),
        ("udp", OTHER4, 123),
        ("udp", OTHER4, 5000),
        ("udp", OTHER6, 5000),
    ]
    lab.start(lab.lan, [sys.executable, "-c", LISTENER, json.dumps(decoys)], ready="ready")
    box_side = [("tcp", "0.0.0.0", 22), ("tcp", "0.0.0.0", 8080), ("tcp", "::", 22)]
    lab.start(lab.box, [sys.executable, "-c", LISTENER, json.dumps(box_side)], ready="ready")


# name -> (proto, source, destination, port, kind), from the box and towards the box
OUTBOUND = {
    "broker v4 mqtt": ("tcp", None, BROKER4, 1883, "mqtt"),
    "broker v6 mqtt": ("tcp", None, BROKER6, 1883, "mqtt"),
    "camera rtsp port": ("tcp", None, CAMERA4, 8554, "plain"),
    "dns udp": ("udp", None, OTHER4, 53, "plain"),
    "dns tcp": ("tcp", None, OTHER4, 53, "plain"),
    "ntp": ("udp", None, OTHER4, 123, "plain"),
    "broker other port": ("tcp", None, BROKER4, 80, "plain"),
    "broker tls port not configured": ("tcp", None, BROKER4, 8883, "plain"),
    "other host mqtt port": ("tcp", None, OTHER4, 1883, "plain"),
    "other host https": ("tcp", None, OTHER4, 443, "plain"),
    "camera other port": ("tcp", None, CAMERA4, 554, "plain"),
    "other v6 host mqtt port": ("tcp", None, OTHER6, 1883, "plain"),
    "broker v6 other port": ("tcp", None, BROKER6, 80, "plain"),
    "udp elsewhere": ("udp", None, OTHER4, 5000, "plain"),
    "udp v6 elsewhere": ("udp", None, OTHER6, 5000, "plain"),
}
OUTBOUND_ALLOWED = {"broker v4 mqtt", "broker v6 mqtt", "camera rtsp port", "dns udp", "dns tcp",
                    "ntp"}  # fmt: skip
INBOUND = {
    "ssh from lan": ("tcp", BROKER4, BOX4, 22, "plain"),
    "ssh from lan v6": ("tcp", BROKER6, BOX6, 22, "plain"),
    "ssh from outside the lan": ("tcp", OUTSIDER4, BOX4, 22, "plain"),
    "other port from lan": ("tcp", BROKER4, BOX4, 8080, "plain"),
}
INBOUND_ALLOWED = {"ssh from lan", "ssh from lan v6"}


def probes(table: dict[str, tuple]) -> list[tuple]:
    return [(name, *spec) for name, spec in table.items()]


@pytest.mark.slow
def test_only_broker_camera_dns_ntp_out_and_lan_ssh_in(lab: Lab, tmp_path: Path) -> None:
    start_services(lab, tmp_path)
    # Without the firewall, every probe gets through: the lab itself blocks nothing.
    assert lab.probe(lab.box, probes(OUTBOUND)) == dict.fromkeys(OUTBOUND, True)
    assert lab.probe(lab.lan, probes(INBOUND)) == dict.fromkeys(INBOUND, True)

    ruleset = write_policy(tmp_path / "root")
    sh(NFT, "-f", str(ruleset), ns=lab.box)
    sh(NFT, "-f", str(ruleset), ns=lab.box)  # loading again replaces the table, no error

    out = lab.probe(lab.box, probes(OUTBOUND))
    assert out == {name: name in OUTBOUND_ALLOWED for name in OUTBOUND}
    dropped_out = lab.counter("dropped_out")
    assert dropped_out > 0
    inb = lab.probe(lab.lan, probes(INBOUND))
    assert inb == {name: name in INBOUND_ALLOWED for name in INBOUND}
    assert lab.counter("dropped_in") > 0
    # an allowed connection is not counted as a drop
    before = lab.counter("dropped_out")
    assert lab.probe(lab.box, probes({"mqtt": OUTBOUND["broker v4 mqtt"]})) == {"mqtt": True}
    assert lab.counter("dropped_out") == before
