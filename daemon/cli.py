"""The ``veilcam`` command line: one sub-command per module in ``daemon.commands``.

Each command module exposes ``add_arguments(parser)`` and ``run(args) -> int`` and keeps its heavy
imports (detector runtime, PyAV) inside ``run`` so that ``veilcam check-config`` stays light.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from daemon import __version__

# commands that decode frames: no core dump may hold them (daemon/nodump.py)
HANDLES_FRAMES = frozenset({"run", "mask", "eval", "reveal"})

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("daemon.commands.run", "run the camera service (capture, detect, mask, record)"),
    "mask": ("daemon.commands.mask", "anonymise image and video files"),
    "eval": ("daemon.commands.eval", "measure face protection on an annotated data set"),
    "check-config": ("daemon.commands.check_config", "validate a config file"),
    "keygen": ("daemon.commands.keygen", "make the owner's escrow key pair (on your computer)"),
    "reveal": (
        "daemon.commands.reveal",
        "restore a segment's sealed regions with the owner key",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="veilcam", description="Mask faces on the device; record only masked video."
    )
    parser.add_argument("--version", action="version", version=f"veilcam {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, helptext) in COMMANDS.items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        mod = importlib.import_module(module)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in HANDLES_FRAMES:
        from daemon.nodump import forbid_core_dumps

        forbid_core_dumps()
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 1
