"""``veilcam run``: the camera service (capture, detect, track, mask, record only masked video).

Exit codes: 0 stopped cleanly (signal, ``--for``, or a file played once ended); 1 the source
could not be used; 2 invalid config; 3 detector model missing or corrupt (nothing recorded).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from daemon.config import DEFAULT_PATH

if TYPE_CHECKING:
    from collections.abc import Callable

    from daemon.config import Config
    from daemon.frames import MaskedFrame
    from daemon.service.daemon import Service


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help=f"config file (default {DEFAULT_PATH} if it exists, else built-in defaults)",
    )
    p.add_argument("--source", metavar="SRC", help="override camera.source")
    p.add_argument(
        "--for", dest="duration", type=float, metavar="SECONDS", help="stop cleanly after this"
    )
    p.add_argument(
        "--fast",
        action="store_true",
        help="play a file source once, as fast as the pipeline goes, without dropping frames",
    )
    p.add_argument(
        "--regions",
        metavar="FILE",
        help="write the masked regions of every recorded frame as JSON Lines",
    )


class RegionsWriter:
    """``{"frame": N, "source": S, "regions": [...]}`` per recorded frame.

    N counts recorded frames; S is the frame's number in the source (for a file played once, its
    decode index), so that ``veilcam eval video`` can match it to a reference.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, frame: MaskedFrame, n: int) -> None:
        rec: dict[str, object] = {"frame": n, "source": frame.index}
        rec["regions"] = [r.to_json() for r in frame.regions]
        if frame.obscured:
            rec["obscured"] = True  # as veilcam mask writes; frame.reason says why
        self.out.write(json.dumps(rec) + "\n")
        self.out.flush()  # a reader (tail -f, a test) sees each frame once it is recorded


def attach_listeners(service: Service, cfg: Config) -> Callable[[], None]:
    """Listeners beyond systemd status: the MQTT bridge (it connects only if mqtt.enabled, and
    the daemon records whatever the broker does). Returns what stops them."""
    from daemon.mqtt.bridge import attach

    return attach(service, cfg).stop


def run(args: argparse.Namespace) -> int:
    from daemon import logs
    from daemon.config import Config, ConfigError, load
    from daemon.service.daemon import EXIT_CONFIG, Service

    path: Path | None = Path(args.config) if args.config else None
    if path is None and DEFAULT_PATH.exists():
        path = DEFAULT_PATH
    try:
        cfg = load(path) if path is not None else Config()
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    logs.setup(cfg.logging.level)
    regions_file = open(args.regions, "w", encoding="utf-8") if args.regions else None  # noqa: SIM115
    try:
        service = Service(
            cfg,
            config_path=path,
            source=args.source,
            fast=args.fast,
            on_written=RegionsWriter(regions_file) if regions_file else None,
        )
        stop_listeners = attach_listeners(service, cfg)
        service.install_signals()
        try:
            return service.run(args.duration)
        finally:
            stop_listeners()  # after the pipeline: its last events are delivered, then offline
    finally:
        if regions_file is not None:
            regions_file.close()
