"""Turn config.yaml into the box's network allow-lists: a systemd drop-in and an nftables ruleset.

The daemon may talk only to its MQTT broker (and to a network camera, if ``camera.source`` is an
``rtsp://`` or ``http(s)://`` URL). Both allow-lists hold addresses, not names, so a host name is
resolved here, when the policy is applied (``veilcam check-config --apply-network``); if the
broker's address changes, apply again. Nothing here runs inside the daemon.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from daemon.schema import check_text

if TYPE_CHECKING:  # the renderers need no config model (the CI unit check uses them bare)
    from daemon.config import Config

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[IPAddress]]

DROPIN = Path("etc/systemd/system/veilcam.service.d/50-network.conf")
PATHS_DROPIN = Path("etc/systemd/system/veilcam.service.d/50-paths.conf")
DATA_DIR = Path("/var/lib/veilcam")
RULESET = Path("etc/veilcam/firewall.nft")
LAN_FILE = Path("etc/veilcam/lan-networks")
SSHD_CONFIG = Path("etc/ssh/sshd_config")
RESOLV_CONF = Path("etc/resolv.conf")
TEMPLATE_INSTALLED = Path("opt/veilcam/share/nftables.conf")
TEMPLATE_SOURCE = Path(__file__).resolve().parent.parent / "deploy" / "nftables.conf"
FIREWALL_UNIT = "veilcam-firewall.service"

# "The local network" when /etc/veilcam/lan-networks does not say otherwise: private IPv4
# ranges, link-local and unique-local IPv6. Global IPv6 LAN prefixes must be listed in that file.
DEFAULT_LAN: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    )
)
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
_TOKEN = re.compile(r"@@([A-Z0-9_]+)@@")


class NetPolicyError(Exception):
    """The policy cannot be built (unresolvable host, bad LAN file, bad template)."""


@dataclass(frozen=True)
class Peer:
    """One host the daemon connects to, with the addresses it resolved to at apply time."""

    role: str  # "mqtt" or "camera"
    host: str
    port: int
    addresses: tuple[IPAddress, ...] = field(default=())

    @property
    def by_name(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return True
        return False

    @property
    def mdns(self) -> bool:
        return self.by_name and self.host.rstrip(".").lower().endswith(".local")

    @property
    def needs_dns(self) -> bool:
        """Whether the daemon will ask a DNS server for this host (not /etc/hosts, not mDNS)."""
        return self.by_name and not self.mdns and not all(a.is_loopback for a in self.addresses)


def wanted_peers(cfg: Config) -> list[tuple[str, str, int]]:
    """(role, host, port) of every host the config makes the daemon connect to."""
    peers: list[tuple[str, str, int]] = []
    if cfg.mqtt.enabled:
        peers.append(("mqtt", cfg.mqtt.host, cfg.mqtt.port))
    url = urlsplit(cfg.camera.source)
    scheme = url.scheme.lower()
    if scheme in DEFAULT_PORTS and url.hostname:
        try:
            port = url.port or DEFAULT_PORTS[scheme]
        except ValueError as exc:  # e.g. rtsp://host:99999/
            raise NetPolicyError(f"camera.source: bad port: {exc}") from None
        peers.append(("camera", url.hostname, port))  # never the URL: it may hold a password
    return peers


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every TCP address ``host`` resolves to now (literal addresses are returned as they are)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise NetPolicyError(f"cannot resolve {host!r}: {exc.strerror}") from None
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


def resolve(
    wanted: Iterable[tuple[str, str, int]], resolver: Resolver = system_resolver
) -> list[Peer]:
    peers = []
    for role, host, port in wanted:
        addresses = tuple(dict.fromkeys(resolver(host, port)))  # unique, in resolver order
        if not addresses:
            raise NetPolicyError(f"{role}: {host!r} resolved to no address")
        peers.append(Peer(role, host, port, addresses))
    return peers


def read_lan(path: Path) -> tuple[IPNetwork, ...]:
    """Networks allowed to SSH in: one CIDR per line in ``path`` (``#`` comments), or defaults."""
    if not path.exists():
        return DEFAULT_LAN
    nets: list[IPNetwork] = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            nets.append(ipaddress.ip_network(line, strict=False))
        except ValueError as exc:
            raise NetPolicyError(f"{path}:{n}: {exc}") from None
    if not nets:
        raise NetPolicyError(f"{path}: no network listed (SSH would be closed to everyone)")
    return tuple(nets)


def read_ssh_ports(path: Path) -> list[int]:
    """The ports sshd listens on, from its config and drop-ins (22 when none is set)."""
    ports: set[int] = set()
    files = [path, *sorted(path.with_name("sshd_config.d").glob("*.conf"))]
    for f in files:
        try:
            text = f.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for raw in text.splitlines():
            parts = raw.split("#", 1)[0].split()
            if len(parts) == 2 and parts[0].lower() == "port" and parts[1].isdigit():
                ports.add(int(parts[1]))
            elif parts and parts[0].lower() == "match":
                break  # Port is not allowed in Match blocks; stop at the first
    return sorted(ports) or [22]


def outside_lan(addresses: Iterable[str], lan: Sequence[IPNetwork]) -> list[str]:
    """The addresses (e.g. of the SSH sessions open now) that the firewall would not let in."""
    out = []
    for text in addresses:
        try:
            addr = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
        except ValueError:
            continue
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        if not addr.is_loopback and not any(addr in n for n in lan if n.version == addr.version):
            out.append(str(addr))
    return out


def read_nameservers(path: Path) -> list[IPAddress]:
    """The DNS servers in a resolv.conf, which the daemon needs to look a host name up itself."""
    servers: list[IPAddress] = []
    if not path.exists():
        return servers
    for raw in path.read_text(encoding="utf-8").splitlines():
        parts = raw.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                servers.append(ipaddress.ip_address(parts[1].split("%", 1)[0]))
            except ValueError:
                continue
    return servers


def render_dropin(peers: Sequence[Peer], nameservers: Sequence[IPAddress] = ()) -> str:
    """The ``IPAddressAllow=`` drop-in for veilcam.service (the unit itself denies ``any``).

    DNS servers are added only when a peer is given by a (non-mDNS) name, because the daemon then
    resolves it itself; ``.local`` names are resolved by avahi over a UNIX socket instead.
    """
    allow: dict[IPAddress, str] = {}
    for p in peers:
        for a in p.addresses:
            allow.setdefault(a, f"{p.role} {p.host}:{p.port}")
    if any(p.needs_dns for p in peers):
        for ns in nameservers:
            allow.setdefault(ns, "DNS server (a peer is given by name)")
    lines = [
        "# Written by `veilcam check-config --apply-network` from /etc/veilcam/config.yaml.",
        "# Do not edit: change the config and apply again. The unit has IPAddressDeny=any.",
        "[Service]",
        "IPAddressAllow=",
    ]
    for addr, why in allow.items():
        lines.append(f"# {why}")
        lines.append(f"IPAddressAllow={addr}")
    if not allow:
        lines.append("# no peer: MQTT is disabled and the camera is local")
    return "\n".join(lines) + "\n"


def render_paths_dropin(cfg: Config) -> str:
    """``ReadWritePaths=`` for recordings kept outside /var/lib/veilcam (e.g. a USB disk).

    The unit can write only to /var/lib/veilcam (ProtectSystem=strict). The ``-`` prefix lets the
    service start while the disk is missing, so that the daemon can report it over MQTT.
    """
    rec = cfg.recording
    wanted = dict.fromkeys([rec.path, rec.resolved_state_file().parent])
    outside = [p for p in wanted if not p.is_relative_to(DATA_DIR)]
    lines = [
        "# Written by `veilcam check-config --apply-network` from /etc/veilcam/config.yaml.",
        "[Service]",
    ]
    lines += [f"ReadWritePaths={systemd_quote(f'-{p}')}" for p in outside] or [
        f"# recordings are under {DATA_DIR}"
    ]
    return "\n".join(lines) + "\n"


def systemd_quote(word: str) -> str:
    """One word of a unit file setting: double-quoted, so that spaces stay in the path.

    Inside quotes systemd takes ``\\`` and ``\"`` for one character each, and ``%%`` for a
    ``%`` (specifiers are expanded in paths). A control character cannot be quoted safely on one
    line, so it is refused (the config loader already rejects it, with file, line and field).
    """
    try:
        check_text(word)
    except ValueError as exc:
        raise NetPolicyError(f"{word!r}: {exc}") from None
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


def _elements(items: Sequence[str]) -> str:
    # nft rejects an empty "elements = { }"; an empty set simply has no elements line
    return f"elements = {{ {', '.join(items)} }}" if items else ""


def render_ruleset(
    template: str,
    peers: Sequence[Peer],
    lan: Sequence[IPNetwork] = DEFAULT_LAN,
    ssh_ports: Sequence[int] = (22,),
    source: str = "/etc/veilcam/config.yaml",
) -> str:
    """Fill the nftables template (deploy/nftables.conf) with the peers and the LAN networks."""
    v4 = [f"{a} . {p.port}" for p in peers for a in p.addresses if a.version == 4]
    v6 = [f"{a} . {p.port}" for p in peers for a in p.addresses if a.version == 6]
    mdns = any(p.mdns for p in peers)
    values = {
        "SOURCE": source,
        "PEERS_V4": _elements(sorted(set(v4))),
        "PEERS_V6": _elements(sorted(set(v6))),
        "LAN_V4": _elements([str(n) for n in lan if n.version == 4]),
        "LAN_V6": _elements([str(n) for n in lan if n.version == 6]),
        "SSH_PORT": "{ " + ", ".join(str(p) for p in sorted(set(ssh_ports))) + " }",
        "MDNS": "accept" if mdns else "counter name dropped_out drop",
        "MDNS_IN": "accept" if mdns else "counter name dropped_in drop",
    }
    template = "".join(ln for ln in template.splitlines(True) if not ln.startswith("#:"))
    unknown = set(_TOKEN.findall(template)) - values.keys()
    if unknown:
        raise NetPolicyError(f"nftables template: unknown placeholder(s) {sorted(unknown)}")
    return _TOKEN.sub(lambda m: values[m.group(1)], template)


def find_template(root: Path) -> Path:
    for candidate in (root / TEMPLATE_INSTALLED, TEMPLATE_SOURCE):
        if candidate.is_file():
            return candidate
    raise NetPolicyError(f"nftables template not found ({root / TEMPLATE_INSTALLED})")


def _write(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write atomically; return whether the content changed."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(mode)
    os.replace(tmp, path)
    return True


def check_ruleset(text: str) -> None:
    """Let nft parse the ruleset without loading it (needs root; skipped otherwise)."""
    nft = shutil.which("nft") or ("/usr/sbin/nft" if Path("/usr/sbin/nft").exists() else None)
    if nft is None or os.geteuid() != 0:
        return
    proc = subprocess.run(
        [nft, "-c", "-f", "-"], input=text, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise NetPolicyError(f"nft rejected the ruleset:\n{proc.stderr.strip()}")


@dataclass
class Applied:
    peers: list[Peer]
    dropin: Path
    ruleset: Path
    changed: list[Path]
    notes: list[str]
    paths_dropin: Path


def apply(
    cfg: Config,
    root: Path = Path("/"),
    source: str = "/etc/veilcam/config.yaml",
    resolver: Resolver = system_resolver,
    touch_system: bool | None = None,
) -> Applied:
    """Write the drop-in and the ruleset under ``root``; with the real root, make systemd use them.

    Everything is computed (and the ruleset checked by nft) before anything is written, so a
    name that does not resolve leaves the old policy in place.
    """
    try:
        check_text(source)  # it is written into a comment of the ruleset
    except ValueError as exc:
        raise NetPolicyError(f"config file name: {exc}") from None
    peers = resolve(wanted_peers(cfg), resolver)
    dropin = render_dropin(peers, read_nameservers(root / RESOLV_CONF))
    ruleset = render_ruleset(
        find_template(root).read_text(encoding="utf-8"),
        peers,
        read_lan(root / LAN_FILE),
        read_ssh_ports(root / SSHD_CONFIG),
        source=source,
    )
    check_ruleset(ruleset)
    paths = render_paths_dropin(cfg)
    outputs = ((DROPIN, dropin), (PATHS_DROPIN, paths), (RULESET, ruleset))
    changed = [p for p, t in outputs if _write(root / p, t)]
    notes: list[str] = []
    if touch_system is None:
        touch_system = root.resolve() == Path("/") and Path("/run/systemd/system").is_dir()
    if touch_system:
        subprocess.run(["systemctl", "daemon-reload"], check=True)
        enabled = subprocess.run(["systemctl", "is-enabled", "--quiet", FIREWALL_UNIT], check=False)
        if enabled.returncode == 0:
            subprocess.run(["systemctl", "restart", FIREWALL_UNIT], check=True)
            notes.append("firewall reloaded")
        else:
            notes.append(f"firewall not enabled ({FIREWALL_UNIT}); ruleset written only")
        notes.append("restart the service to use the new allow-list: systemctl restart veilcam")
    changed_paths = [root / p for p in changed]
    return Applied(peers, root / DROPIN, root / RULESET, changed_paths, notes, root / PATHS_DROPIN)
