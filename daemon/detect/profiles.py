"""Detection profiles: how much of each frame is searched, chosen to fit the board.

A cheaper schedule protects less: tiles are what find small, far faces. So the profiles are
named by what they give up, the owner can fix one (``detect.schedule.profile``), and an explicit
``detect.schedule.tile_scales`` / ``detect.people.tiles`` / ``detect.threads`` always wins.
``auto`` (the default) takes the most protective profile the board's projection
(:mod:`daemon.boardcost`) says carries the camera; on a board with no projection (x86, Jetson)
that is ``full``, and the pipeline's own speed check warns if the detector falls behind. A
profile below ``full``, or a camera the board cannot carry, is said at start in the log and
over MQTT with the fix: protection is never lowered silently.

Recall per profile on WIDER (README, "Detection profiles"): ``veilcam eval faces --set
detect.schedule.profile=NAME``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from daemon.board import Board
from daemon.boardcost import BOARDS, Projection, project
from daemon.detect.config import FULL_TILE_SCALES, DetectConfig
from daemon.detect.people_config import FULL_PEOPLE_TILES
from daemon.detect.ssd_people import windows as people_windows
from daemon.detect.tiling import plan
from daemon.logs import fields

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Profile:
    tile_scales: tuple[float, ...]  # detect.schedule.tile_scales
    people_tiles: int  # detect.people.tiles
    protects: str  # what it finds, for the log and the README


PROFILES: dict[str, Profile] = {
    "full": Profile(FULL_TILE_SCALES, FULL_PEOPLE_TILES, "faces from ~12 px: tiles at full size"),
    "balanced": Profile((0.6,), 2, "faces from ~25 px: tiles at 0.6x; smaller faces may be missed"),
    "light": Profile(
        (), 1, "faces from ~5 % of the frame height: whole frame only; far faces may be missed"
    ),
}
ORDER = ("full", "balanced", "light")  # most protective first


def default_threads(cores: int | None = None) -> int:
    """One interpreter thread per core but one (left to capture, masking and encoding), 2 – 4:
    3 on a Pi's 4 cores, 2 on a 2-core box."""
    return max(2, min(4, (cores or os.cpu_count() or 2) - 1))


def concrete(cfg: DetectConfig, name: str | None = None, cores: int | None = None) -> DetectConfig:
    """``cfg`` with the profile's values wherever the config left them null. ``name``: the
    profile to apply (default: the configured one; ``auto`` means ``full`` where no board or
    camera is known, e.g. ``veilcam mask`` and ``veilcam eval``)."""
    name = name or cfg.schedule.profile
    p = PROFILES["full" if name == "auto" else name]
    schedule, people = cfg.schedule, cfg.people
    update: dict[str, Any] = {}
    if schedule.tile_scales is None:
        update["schedule"] = schedule.model_copy(update={"tile_scales": list(p.tile_scales)})
    if people.tiles is None:
        update["people"] = people.model_copy(update={"tiles": p.people_tiles})
    if cfg.threads is None:
        update["threads"] = default_threads(cores)
    return cfg.model_copy(update=update) if update else cfg


@dataclass(frozen=True, slots=True)
class Choice:
    profile: str
    board: str
    reason: str
    overloaded: bool  # the board cannot carry the camera even with the profile chosen
    projection: Projection | None

    def stats(self) -> dict[str, Any]:
        """For the MQTT stats (the "Detection profile" and "Board overloaded" entities)."""
        p = self.projection
        return {
            "detect_profile": self.profile,
            "detect_profile_reason": self.reason,
            "board_overloaded": self.overloaded,
            "projected_cpu_percent": round(100 * p.share) if p else None,
        }


@dataclass(frozen=True, slots=True)
class Camera:
    """What the projection needs to know of the camera."""

    width: int
    height: int
    fps: float
    decode: bool = True  # H.264 to decode (RTSP, files); a Pi camera's frames arrive raw
    hw_encode: bool = False  # the recording uses the Pi 4's hardware encoder


def projection(
    cfg: DetectConfig, board: Board, cam: Camera, deadline_ms: float
) -> Projection | None:
    """The board's projection for this (concrete) config, or None where it has none."""
    cost = BOARDS.get(board.kind)
    if cost is None or cfg.backend != "centerface":
        return None  # no counts for this CPU or this model
    size = cfg.centerface.input_size or (640, 352)
    people, w, h = cfg.people, cam.width, cam.height
    return project(
        cost, w, h, cam.fps,
        face_runs=len(plan(w, h, size[0], size[1], cfg.schedule)),
        model_px=size[0] * size[1],
        people_runs=len(people_windows(w, h, people)) if people.enabled else 0,
        people_every=people.every,
        threads=cfg.threads or default_threads(cost.cores),
        deadline_ms=deadline_ms,
        decode=cam.decode,
        hw_encode=cam.hw_encode,
    )  # fmt: skip


def choose(
    cfg: DetectConfig, board: Board, cam: Camera, deadline_ms: float
) -> tuple[DetectConfig, Choice]:
    """The concrete config to run ``cam`` on ``board``: the configured profile, or with
    ``auto`` the first of :data:`ORDER` that fits (the last one, flagged overloaded, if none
    does). With every profile key set in the config, the profile is ``custom``."""
    where = f"{board.kind} board, {cam.width}x{cam.height} at {cam.fps:g} fps"
    cores = BOARDS[board.kind].cores if board.kind in BOARDS else None
    name = cfg.schedule.profile
    if cfg.schedule.tile_scales is not None and cfg.people.tiles is not None:
        name = "custom"
    names = list(ORDER) if name == "auto" else [name]
    tried: list[str] = []
    for n in names:
        out = concrete(cfg, "full" if n == "custom" else n, cores)
        proj = projection(out, board, cam, deadline_ms)
        last = n == names[-1]
        if proj is not None and not proj.fits and not last:
            tried.append(f"{n}: {proj.why}")
            continue
        if proj is None:
            said = "set in the config" if name != "auto" else "no speed projection for this board"
        elif proj.fits:
            said = f"projected {proj.share:.0%} of the cores"
        else:
            said = proj.why
        reason = "; ".join([*tried, f"{n}: {said}"]) + f" ({where})"
        return out, Choice(n, board.kind, reason, proj is not None and not proj.fits, proj)
    raise AssertionError("unreachable: the last profile always returns")


def announce(choice: Choice) -> None:
    """Say the choice once, at the level it deserves: lowered protection is a warning."""
    info = fields(
        profile=choice.profile,
        board=choice.board,
        reason=choice.reason,
        protects=PROFILES[choice.profile].protects if choice.profile in PROFILES else "as set",
    )
    if choice.overloaded:
        log.warning(
            "the board cannot carry this camera: frames will be obscured or dropped; lower the "
            "camera's resolution or frame rate (camera.width, camera.height, camera.fps)",
            extra=info,
        )
    elif choice.profile != "full":
        log.warning(
            "detection profile below full: small faces may be missed; lower the camera's "
            "resolution or frame rate to get full, or set detect.schedule.profile: full",
            extra=info,
        )
    else:
        log.info("detection profile", extra=info)
