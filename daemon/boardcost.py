"""What a frame costs on a Raspberry Pi, projected from instruction counts (README, "On a Pi").

There is no Pi in the project's CI, but its instruction stream was counted exactly:
``bench/pi_model.py`` runs every stage of a frame's way on the project's own code and the real
aarch64 wheels under ``qemu-aarch64 -cpu cortex-a76`` (Pi 5) and ``cortex-a72`` (Pi 4). The
counts it wrote (``bench/pi_model_counts.json``) are copied into :data:`BOARDS` (a test keeps the
two equal), and turned into milliseconds with an assumed IPC and clock. No published Pi figure of
a counted workload was found to calibrate them: the projection is a model, stated as such.

The counts come from the facenet clip, a crowd of ~60 faces: the tile gate opens every tile and
the masker blurs 60 faces a frame. That is the load this model plans for, so a party in the
living room does not black the recording out.
"""

from __future__ import annotations

from dataclasses import dataclass

EFFICIENCY = 0.8  # share of N cores (or interpreter threads) that parallel work really gets
MAX_SHARE = 0.70  # a profile fits when 25 fps need at most this share of the cores
MP_720, MP_1080 = 1280 * 720 / 1e6, 1920 * 1080 / 1e6
MODEL_PX = 544 * 416  # the CenterFace input the face-run counts were made at


@dataclass(frozen=True, slots=True)
class BoardCost:
    """Counted instructions (millions) at 720p and 1080p, and the assumed speed of one core."""

    cpu: str
    cores: int
    ipc: float
    ghz: float
    face_run: tuple[float, float]  # one CenterFace run at 544x416, its crop and decode included
    people_window: tuple[float, float]  # one SSD window (resize + run + decode)
    colour: tuple[float, float]  # per detector run: I420 -> BGR
    decode: tuple[float, float]  # per frame
    track_mask: tuple[float, float]  # per frame, 60 faces
    encode: tuple[float, float]  # per frame, libx264 ultrafast

    def ms(self, minstr: float) -> float:
        """Milliseconds one core takes for ``minstr`` million instructions."""
        return minstr / (self.ipc * self.ghz)


def at(pair: tuple[float, float], mp: float) -> float:
    """A count at ``mp`` megapixels: linear through the 720p and 1080p counts, never below a
    tenth of the 720p one (small frames still pay the per-call overheads)."""
    lo, hi = pair
    return max(0.1 * lo, lo + (hi - lo) * (mp - MP_720) / (MP_1080 - MP_720))


# From bench/pi_model_counts.json (counts / runs); a72 decode, colour, track+mask and encode are
# the a76 counts until they are counted on the a72 (same code; README says which).
_LIGHT = dict(
    colour=(7.3, 17.2),
    decode=(23.9, 44.3),
    track_mask=(116.4, 189.8),
    encode=(42.5, 89.3),
)
BOARDS: dict[str, BoardCost] = {
    "pi5": BoardCost(
        "cortex-a76", 4, 2.0, 2.4,
        face_run=(270.4, 269.4), people_window=(139.4, 155.7), **_LIGHT,
    ),
    "pi4": BoardCost(
        "cortex-a72", 4, 1.5, 1.8,
        face_run=(552.3, 550.9), people_window=(246.8, 263.9), **_LIGHT,
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Projection:
    """One schedule on one board at one camera size and rate, in the worst case (every tile)."""

    face_runs: int  # model runs per detector run
    people_runs: int  # SSD windows per person pass (0: people off)
    frame_ms: float  # CPU-ms per frame: decode, track+mask, encode
    run_ms: float  # CPU-ms per detector run, person pass averaged over its cadence
    latency_ms: float  # wall-ms of the slowest detector run (with a person pass)
    share: float  # share of the cores the camera's rate needs
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
    """The gate needs a detection within ``deadline_ms`` of every frame. Detector runs follow
    each other, so a frame that just missed one waits for the next: the slowest run must take
    at most half the deadline (the warning the pipeline gives at run time), and the detector
    must run at least once per (deadline - latency). At that rate, plus decode, masking and
    encoding every frame, the camera must need at most :data:`MAX_SHARE` of the cores.

    ``decode``: the camera sends H.264 (RTSP, files); a Pi camera's frames arrive raw.
    ``hw_encode``: the Pi 4's hardware encoder takes x264's place; the CPU still converts each
    frame to I420, counted as the colour stage's (the same conversion, the other way)."""
    mp = width * height / 1e6
    face = cost.ms(at(cost.face_run, mp)) * model_px / MODEL_PX
    people = people_runs * cost.ms(at(cost.people_window, mp))
    run = cost.ms(at(cost.colour, mp)) + face_runs * face
    encode = at(cost.colour if hw_encode else cost.encode, mp)
    frame = cost.ms((at(cost.decode, mp) if decode else 0.0) + at(cost.track_mask, mp) + encode)
    latency = (run + people) / (min(threads, cost.cores) * EFFICIENCY)
    runs_per_s = 1000.0 / max(latency, deadline_ms - latency, 1.0)  # never faster than a run
    run_avg = run + people / max(1, people_every)
    share = (fps * frame + runs_per_s * run_avg) / (cost.cores * 1000.0 * EFFICIENCY)
    why = ""
    if 2 * latency > deadline_ms:
        why = f"a detector run takes ~{latency:.0f} ms, over half of gate.deadline_ms"
    elif share > MAX_SHARE:
        why = f"needs {share:.0%} of {cost.cores} cores (at most {MAX_SHARE:.0%})"
    return Projection(face_runs, people_runs, frame, run_avg, latency, share, not why, why)
