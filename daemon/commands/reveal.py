"""``veilcam reveal SEGMENT.mp4 --key KEY --output CLEAR.mp4``: restore sealed regions, off the box.

Needs the private key and its passphrase; prints every damaged or tampered chunk and still
reveals the rest; appends an audit record (``reveal-audit.jsonl``) beside the output.
"""

from __future__ import annotations

import argparse
import sys

from daemon.commands.keygen import read_passphrase


def _box(text: str) -> tuple[int, int, int, int]:
    parts = text.split(",")
    if len(parts) != 4:
        raise argparse.ArgumentTypeError("expected X,Y,W,H")
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError("expected four integers X,Y,W,H") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise argparse.ArgumentTypeError("X,Y >= 0 and W,H > 0")
    return x, y, w, h


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("segment", metavar="SEGMENT.mp4", help="a recorded segment (.sealed beside it)")
    p.add_argument("--key", required=True, metavar="PRIVATE_KEY", help="escrow.key from keygen")
    p.add_argument("--output", "-o", required=True, metavar="CLEAR.mp4", help="revealed video")
    p.add_argument("--passphrase-file", metavar="FILE", help="read the passphrase from FILE")
    p.add_argument("--from", dest="start", type=float, metavar="T", help="seconds into segment")
    p.add_argument("--to", dest="end", type=float, metavar="T", help="seconds into segment")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--track", type=int, metavar="N", help="only this track's regions")
    which.add_argument("--region", type=_box, metavar="X,Y,W,H", help="only regions meeting this")


def run(args: argparse.Namespace) -> int:
    from daemon.escrow.keys import KeyFileError, load_private
    from daemon.escrow.reveal import RevealError, Selection, reveal

    try:
        key = load_private(args.key, read_passphrase(args.passphrase_file, confirm=False))
    except KeyFileError as exc:
        print(f"reveal: {exc}", file=sys.stderr)
        return 2
    select = Selection(args.start, args.end, args.track, args.region)
    try:
        report = reveal(args.segment, key, args.output, select)
    except RevealError as exc:
        print(f"reveal: {exc}", file=sys.stderr)
        return 2
    for problem in report.problems:
        print(f"reveal: {problem}", file=sys.stderr)
    print(
        f"{args.output}: {report.regions_revealed} regions revealed in "
        f"{report.frames_revealed} of {report.frames} frames; audit: {report.audit}"
    )
    return 1 if report.problems else 0
