"""``veilcam check-config FILE``: validate a config and print every problem with its line."""

from __future__ import annotations

import argparse
import sys

from daemon.config import DEFAULT_PATH, ConfigError, load


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", default=str(DEFAULT_PATH), help="config file to check")


def run(args: argparse.Namespace) -> int:
    try:
        load(args.file)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 1
    print(f"{args.file}: ok")
    return 0
