"""Delete the oldest segments by age and by disk budget.

Three limits, each optional except age: ``retain_days``; ``max_gb`` for the camera's recordings;
``min_free_percent`` of the file system kept free. The segment being written is never deleted.
Segments are ordered by their name (start time), which survives clock-stable copies and mtime
changes. A segment's escrow sidecar (``<segment>.sealed``) counts with it and goes with it.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from daemon.escrow.sidecar import sidecar_path
from daemon.logs import fields
from daemon.record.config import RecordingConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Segment:
    path: Path
    size: int
    mtime: float


def list_segments(camera_dir: Path) -> list[Segment]:
    """Every ``.mp4`` under ``camera_dir``, oldest first (by date folder and file name)."""
    out: list[Segment] = []
    if not camera_dir.is_dir():
        return out
    for p in camera_dir.glob("*/*.mp4"):
        try:
            st = p.stat()
        except OSError:
            continue
        out.append(Segment(p, st.st_size + _sidecar_size(p), st.st_mtime))
    out.sort(key=lambda s: (s.path.parent.name, s.path.name))
    return out


def disk_usage(camera_dir: Path) -> int:
    return sum(s.size for s in list_segments(camera_dir))


def enforce(
    camera_dir: Path,
    cfg: RecordingConfig,
    *,
    keep: Path | None = None,
    now: float | None = None,
    free_bytes_needed: int = 0,
) -> list[Path]:
    """Delete segments until every limit holds; returns what was deleted (oldest first).

    ``free_bytes_needed`` asks for that much more free space (used after a full disk).
    """
    now = time.time() if now is None else now
    segs = [s for s in list_segments(camera_dir) if keep is None or s.path != keep]
    deleted: list[Path] = []
    max_age = cfg.retain_days * 86400.0
    budget = int(cfg.max_gb * 1e9) if cfg.max_gb else None
    total = sum(s.size for s in segs)
    if keep is not None and keep.exists():
        total += keep.stat().st_size + _sidecar_size(keep)

    def over() -> bool:
        if budget is not None and total > budget:
            return True
        try:
            du = shutil.disk_usage(camera_dir)
        except OSError:
            return False
        if free_bytes_needed and du.free < free_bytes_needed:
            return True
        return bool(cfg.min_free_percent and 100.0 * du.free / du.total < cfg.min_free_percent)

    for s in list(segs):
        if now - s.mtime > max_age or over():
            try:
                s.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.error("cannot delete segment", extra=fields(path=s.path, error=exc))
                continue
            try:
                sidecar_path(s.path).unlink(missing_ok=True)
            except OSError as exc:
                log.error("cannot delete sealed file", extra=fields(path=s.path, error=exc))
            total -= s.size
            deleted.append(s.path)
            _remove_empty(s.path.parent)
        else:
            break  # oldest first: once one is kept by every rule, the newer ones are too
    if deleted:
        log.info(
            "retention deleted segments",
            extra=fields(count=len(deleted), oldest=deleted[0].name, dir=camera_dir),
        )
    return deleted


def _sidecar_size(segment: Path) -> int:
    try:
        return sidecar_path(segment).stat().st_size
    except OSError:
        return 0


def _remove_empty(d: Path) -> None:
    try:
        if not any(d.iterdir()):
            os.rmdir(d)
    except OSError:
        pass
