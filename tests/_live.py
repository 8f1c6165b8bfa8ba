"""Helpers for the live-daemon tests: masked test frames, ffprobe checks, free ports."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from daemon.frames import Frame, MaskedFrame
from daemon.mask.masker import Masker

MASKER = Masker()


def masked(index: int, pts: float, image: np.ndarray | None = None) -> MaskedFrame:
    """A MaskedFrame made the only way there is: through the masker."""
    if image is None:
        image = np.full((120, 160, 3), (index * 7) % 255, np.uint8)
    return MASKER.mask(Frame(image, index, pts, time.monotonic()), [])


def write_clip(
    path: Path, images: Iterable[np.ndarray], fps: float, pix_fmt: str = "yuv420p", crf: int = 10
) -> Path:
    """A real H.264 file of the given BGR pictures, one per frame, at ``fps``."""
    images = list(images)
    h, w = images[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        s.codec_context.options = {"crf": str(crf), "preset": "ultrafast"}
        for i, img in enumerate(images):
            vf = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format=pix_fmt)
            vf.pts = i
            for pkt in s.encode(vf):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    return path


def probe(path: Path) -> tuple[int, str]:
    """(decoded frame count, ffprobe's error output) for one file."""
    r = subprocess.run(
        [
            "ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
            "-show_entries", "stream=nb_read_frames", "-of", "json", str(path),
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if r.returncode != 0:
        return 0, r.stderr or f"ffprobe exit {r.returncode}"
    streams = json.loads(r.stdout or "{}").get("streams", [])
    n = int(streams[0].get("nb_read_frames", 0)) if streams else 0
    return n, r.stderr.strip()


def segments(root: Path) -> list[Path]:
    return sorted(root.rglob("*.mp4"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], object], timeout: float, what: str, step: float = 0.05) -> object:
    """Poll ``cond`` until it is truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
