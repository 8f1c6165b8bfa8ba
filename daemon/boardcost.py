"""What a frame costs on a Raspberry Pi, projected from instruction counts (README, "On a Pi").

There is no Pi in the project's CI, but its instruction stream was counted exactly:
``bench/pi_model.py`` runs every stage of a frame's way on the project's own code and the real
aarch64 wheels under ``qemu-aarch64 -cpu cortex-a76`` (Pi 5) and ``cortex-a72`` (Pi 4). The
counts it wrote (``bench/pi_model_counts.json``) are copied into :data:`BOARDS` (a test keeps the
two equal), and turned into milliseconds with an assumed IPC and clock. No published Pi figure of
a counted workload was found to calibrate them: the projection is a model, stated as such.

Two clips were counted: the facenet clip, a crowd of ~60 faces that opens nearly every tile, and
Intel's one-by-one clip, one person walking through a room (a home camera's usual scene). A
detector run's latency is judged on the worst case (every tile open), the load on the usual scene
(see :func:`project`).
"""

from __future__ import annotations

from dataclasses import dataclass

EFFICIENCY = 0.8  # share of N cores (or interpreter threads) that parallel work really gets
MAX_SHARE = 0.70  # a profile fits when 25 fps need at most this share of the cores
MP_720, MP_1080 = 1280 * 720 / 1e6, 1920 * 1080 / 1e6
MODEL_PX = 544 * 416  # the CenterFace input the face-run counts were made at


@dataclass(frozen=True, slots=True)
class Scene:
    """One counted clip's per-frame costs (millions of instructions at 720p and 1080p)."""

    decode: tuple[float, float]  # per frame
    colour: tuple[float, float]  # per detector run: I420 -> BGR
    track_mask: tuple[float, float]  # per frame, the masker's own BGR copy included
    encode: tuple[float, float]  # per frame, libx264 ultrafast
    face_runs: tuple[float, float]  # face-model runs per detector run, full profile, tile gate


@dataclass(frozen=True, slots=True)
class BoardCost:
    """Counted instructions (millions) and the assumed speed of one core."""

    cpu: str
    cores: int
    ipc: float
    ghz: float
    face_run: tuple[float, float]  # one CenterFace run at 544x416, its crop and decode included
    people_window: tuple[float, float]  # one SSD window (resize + run + decode)
    scenes: dict[str, Scene]  # "crowd" (every tile opens), "one_person" (a home's usual)

    def ms(self, minstr: float) -> float:
        """Milliseconds one core takes for ``minstr`` million instructions."""
        return minstr / (self.ipc * self.ghz)


def at(pair: tuple[float, float], mp: float) -> float:
    """A count at ``mp`` megapixels: linear through the 720p and 1080p counts, never below a
    tenth of the 720p one (small frames still pay the per-call overheads)."""
    lo, hi = pair
    return max(0.1 * lo, lo + (hi - lo) * (mp - MP_720) / (MP_1080 - MP_720))


FULL_TILES = (7, 13)  # windows of the full profile at 720p and 1080p (whole frame + tiles)

# From bench/pi_model_counts.json (a test keeps them equal): the facenet clip (crowd) and the
# one-by-one clip (one person walking through a room), each scaled to 720p and 1080p.
BOARDS: dict[str, BoardCost] = {
    "pi5": BoardCost(
        "cortex-a76", 4, 2.0, 2.4,
        face_run=(270.4, 269.4), people_window=(139.4, 155.7),
        scenes={
            "crowd": Scene((23.9, 44.3), (7.3, 17.2), (116.4, 189.8), (42.5, 89.3), (6.5, 11.5)),
            "one_person": Scene((16.7, 33.4), (7.0, 17.0), (71.7, 178.7), (40.1, 87.7), (3.0, 2.5)),
        },
    ),
    "pi4": BoardCost(
        "cortex-a72", 4, 1.5, 1.8,
        face_run=(552.3, 550.9), people_window=(246.8, 263.9),
        scenes={
            "crowd": Scene((24.2, 44.4), (7.8, 17.6), (116.5, 188.8), (43.6, 89.1), (6.5, 11.5)),
            "one_person": Scene((17.2, 33.3), (7.0, 18.1), (71.8, 179.7), (39.5, 87.4), (3.0, 2.5)),
        },
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Projection:
    """One schedule on one board at one camera size and rate."""

    face_runs: int  # model runs per detector run with every tile open
    people_runs: int  # SSD windows per person pass (0: people off)
    latency_ms: float  # wall-ms of the slowest detector run: every tile, a person pass
    share: float  # share of the cores the camera's rate needs with one person in view
    share_crowd: float  # ... and in a crowd that opens nearly every tile
    fits: bool
    why: str  # what does not fit, or ""


def project(
    cost: BoardCost,
    width: int,
    height: int,
    fps: float,
    *,
    face_runs: int,
    model_px: int,
    people_runs: int,
    people_every: int,
    threads: int,
    deadline_ms: float,
    decode: bool = True,
    hw_encode: bool = False,
) -> Projection:
    """The gate needs a detection within ``deadline_ms`` of every frame, and detector runs
    follow each other: a frame that just missed one waits for the next. So the slowest run
    (every tile open, a person pass) must take at most half the deadline: a run that can be
    slow blacks frames out exactly when a crowd is in view. The load is a throughput: in a
    crowd the detector runs less often (the gate still holds while runs are fast enough), so
    it is judged on the usual scene, one person: decode, track+mask and encode every frame, the
    detector once per (deadline - latency), at most :data:`MAX_SHARE` of the cores.

    ``decode``: H.264 decoded on the CPU (RTSP, files), not a Pi camera's raw frames or the Pi
    4's hardware decoder. ``hw_encode``: the Pi 4's hardware encoder takes x264's place; the
    CPU still converts each frame to I420, counted as the colour stage (the same conversion,
    the other way). ``face_runs``: the schedule's windows for this size (all tiles)."""
    mp = width * height / 1e6
    face = cost.ms(at(cost.face_run, mp)) * model_px / MODEL_PX
    people = people_runs * cost.ms(at(cost.people_window, mp))
    full_tiles = at((FULL_TILES[0] - 1.0, FULL_TILES[1] - 1.0), mp)
    crowd = cost.scenes["crowd"]
    latency = (cost.ms(at(crowd.colour, mp)) + face_runs * face + people) / (
        min(threads, cost.cores) * EFFICIENCY
    )
    runs_per_s = 1000.0 / max(latency, deadline_ms - latency, 1.0)  # never faster than a run

    def share(scene: Scene) -> float:
        opened = min(1.0, max(0.0, (at(scene.face_runs, mp) - 1.0) / full_tiles))
        runs = 1 + opened * (face_runs - 1)  # the share of tiles this scene's gate opened
        run = cost.ms(at(scene.colour, mp)) + runs * face + people / max(1, people_every)
        enc = at(scene.colour if hw_encode else scene.encode, mp)
        dec = at(scene.decode, mp) if decode else 0.0
        frame = cost.ms(dec + at(scene.track_mask, mp) + enc)
        return (fps * frame + runs_per_s * run) / (cost.cores * 1000.0 * EFFICIENCY)

    usual, peak = share(cost.scenes["one_person"]), share(crowd)
    why = ""
    if 2 * latency > deadline_ms:
        why = f"a detector run in a crowd takes ~{latency:.0f} ms, over half of gate.deadline_ms"
    elif usual > MAX_SHARE:
        why = f"needs {usual:.0%} of {cost.cores} cores with one person (at most {MAX_SHARE:.0%})"
    return Projection(face_runs, people_runs, latency, usual, peak, not why, why)
