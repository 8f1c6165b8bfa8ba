"""``veilcam check-config FILE``: validate a config and print every problem with its line.

With ``--apply-network`` a valid config also becomes the box's network allow-lists (the
veilcam.service ``IPAddressAllow=`` drop-in and the nftables ruleset); see ``daemon.netpolicy``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from daemon.config import DEFAULT_PATH, Config, ConfigError, load


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", default=str(DEFAULT_PATH), help="config file to check")
    p.add_argument(
        "--apply-network",
        action="store_true",
        help="if valid, write the service's IP allow-list and the firewall ruleset for the "
        "configured MQTT broker and camera (host names are resolved now), and the writable "
        "paths for recordings outside /var/lib/veilcam; then reload systemd and the firewall",
    )
    p.add_argument(
        "--root",
        default="/",
        metavar="DIR",
        help="with --apply-network: write under DIR instead of / and leave systemd alone",
    )


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load(args.file)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 1
    print(f"{args.file}: ok")
    _warn_private_keys(Path(args.file).resolve().parent)
    if args.apply_network:
        return _apply_network(cfg, args)
    return 0


def _warn_private_keys(config_dir: Path) -> None:
    """An escrow private key on the box defeats escrow: say so (it is not a config error, as
    the file may be on its way off the box)."""
    from daemon.escrow.keys import private_keys_in

    dirs = {config_dir, DEFAULT_PATH.parent}
    for found in sorted({f for d in dirs for f in private_keys_in(d)}):
        print(
            f"warning: {found} holds an escrow PRIVATE key; it must not stay on the box (whoever "
            "has the box could then reveal every recording): move it to your computer",
            file=sys.stderr,
        )


def _apply_network(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.netpolicy import NetPolicyError, apply

    try:
        result = apply(cfg, Path(args.root), source=str(Path(args.file).resolve()))
    except (NetPolicyError, OSError) as exc:
        print(f"{args.file}: network policy not applied: {exc}", file=sys.stderr)
        return 1
    for peer in result.peers:
        addrs = ", ".join(str(a) for a in peer.addresses)
        host = f"[{peer.host}]" if ":" in peer.host else peer.host
        print(f"allow {peer.role} {host}:{peer.port} -> {addrs}")
    for path in (result.dropin, result.paths_dropin, result.ruleset):
        print(f"{path}: {'written' if path in result.changed else 'unchanged'}")
    for note in result.notes:
        print(note)
    return 0
