"""``veilcam keygen --out DIR``: the owner's escrow key pair, made on the owner's computer.

Writes ``escrow.pub`` (goes to the box) and ``escrow.key`` (never does), the private key
protected by a passphrase read from ``--passphrase-file``, ``VEILCAM_PASSPHRASE`` or a prompt.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

# directories of an installed box: a private key written there would defeat escrow
BOX_DIRS = (Path("/etc/veilcam"), Path("/var/lib/veilcam"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="where escrow.pub/.key go")
    p.add_argument("--passphrase-file", metavar="FILE", help="read the passphrase from FILE")
    p.add_argument(
        "--kdf",
        choices=("interactive", "moderate", "sensitive"),
        default="moderate",
        help="Argon2id cost of opening the private key (default moderate: 256 MiB, ~1 s)",
    )


def read_passphrase(file: str | None, confirm: bool) -> bytes:
    """From a file (first line), ``VEILCAM_PASSPHRASE``, or the terminal."""
    if file:
        try:
            lines = Path(file).read_bytes().splitlines()
        except OSError as exc:
            raise SystemExit(f"{file}: cannot read the passphrase: {exc.strerror or exc}") from None
        return lines[0] if lines else b""
    env = os.environ.get("VEILCAM_PASSPHRASE")
    if env is not None:
        return env.encode()
    if not sys.stdin.isatty():
        raise SystemExit("no passphrase: use --passphrase-file, VEILCAM_PASSPHRASE or a terminal")
    first = getpass.getpass("passphrase for the private key: ").encode()
    if confirm and getpass.getpass("again: ").encode() != first:
        raise SystemExit("the passphrases differ")
    return first


def run(args: argparse.Namespace) -> int:
    from daemon.escrow.keys import KeyFileError, generate

    out = Path(args.out).resolve()
    if any(out == d or d in out.parents for d in BOX_DIRS):
        print(
            f"{out}: that is the box's own directory; make the key pair on your computer "
            "and copy only escrow.pub to the box",
            file=sys.stderr,
        )
        return 2
    try:
        pair = generate(out, read_passphrase(args.passphrase_file, confirm=True), args.kdf)
    except (KeyFileError, OSError) as exc:
        print(f"keygen: {exc}", file=sys.stderr)
        return 1
    print(f"public key:  {pair.public_file}  (copy to the box as /etc/veilcam/escrow.pub)")
    print(f"private key: {pair.private_file}  (keep it off the box; without it nothing reveals)")
    print(f"fingerprint: {pair.fingerprint}")
    return 0
