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
        "--board",
        choices=("pi5", "pi4", "jetson", "generic"),
        help="say which detection profile this board would run (default: this machine's)",
    )
    p.add_argument(
        "--camera",
        metavar="WxH[@FPS]",
        help="the camera's size and rate for that (default: camera.width, height, fps)",
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
    if not _say_profile(cfg, args.board, args.camera):
        return 2
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


def _say_profile(cfg: Config, kind: str | None, camera: str | None) -> bool:
    """The detection profile the board would run this camera with, and why (README,
    "Detection profiles"): an owner sees before a restart what a camera size costs."""
    import re

    from daemon.board import Board, read_board
    from daemon.detect.profiles import Camera, choose

    board = Board(kind, "") if kind else read_board()  # type: ignore[arg-type]
    w, h, fps = cfg.camera.width, cfg.camera.height, cfg.camera.fps or 25.0
    if camera:
        m = re.fullmatch(r"(\d+)x(\d+)(?:@(\d+(?:\.\d+)?))?", camera)
        if not m or not (0 < int(m[1]) <= 16384 and 0 < int(m[2]) <= 16384):
            print(
                f"--camera {camera!r}: expected WxH or WxH@FPS, e.g. 1280x720@25", file=sys.stderr
            )
            return False
        w, h, fps = int(m[1]), int(m[2]), float(m[3] or fps)
    if not (w and h):
        print(
            f"detection profile ({board.kind} board): chosen at the camera's first frame (set "
            "camera.width and camera.height, or pass --camera WxH@FPS, to see it now)"
        )
        return True
    from daemon.media.encode import choose_codec

    raw = cfg.camera.source == "picamera2"
    rec = cfg.recording
    # the Pi 4's hardware encoder: where it opens here, or on an asked-for Pi 4 (encoder auto)
    auto_hw = board.kind == "pi4" if kind else choose_codec("auto") == "h264_v4l2m2m"
    hw = rec.enabled and (rec.encoder == "h264_v4l2m2m" or (rec.encoder == "auto" and auto_hw))
    cam = Camera(w, h, fps, decode=not raw, hw_encode=hw)
    _, c = choose(cfg.detect, board, cam, cfg.gate.deadline_ms)
    flag = " (BOARD OVERLOADED: frames will be obscured or dropped)" if c.overloaded else ""
    print(f"detection profile: {c.profile}{flag} ({c.reason})")
    return True


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
