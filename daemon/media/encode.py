"""H.264 encoding of masked frames through PyAV.

Only :class:`~daemon.frames.MaskedFrame` is accepted (rule 1). Files are fragmented MP4 by
default (``frag_keyframe+empty_moov+default_base_moof``) with a keyframe at least every
``keyframe_s`` seconds, so a power cut or kill -9 leaves everything up to the last fragment
playable. Packets are flushed to the file as they are muxed, so the file size after each write
is a fragment boundary; when a write fails (full disk) the file is cut back to the last complete
fragment, so it stays playable and loses at most what came after its last keyframe.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np

from daemon.frames import MaskedFrame, require_masked
from daemon.logs import fields

log = logging.getLogger(__name__)

Codec = Literal["auto", "libx264", "h264_v4l2m2m"]
FRAGMENTED = "frag_keyframe+empty_moov+default_base_moof"
_TIME_BASE = Fraction(1, 90000)


def _hardware_encoder_available() -> bool:
    """True where the Pi's V4L2 M2M H.264 encoder exists (Pi 4; the Pi 5 has none)."""
    try:
        av.codec.Codec("h264_v4l2m2m", "w")
    except Exception:
        return False
    return any(Path("/dev").glob("video1[01]"))


def choose_codec(requested: Codec) -> str:
    """Resolve ``auto`` to the hardware encoder where it exists, else libx264."""
    if requested != "auto":
        return requested
    return "h264_v4l2m2m" if _hardware_encoder_available() else "libx264"


class EncodeError(Exception):
    """The encoder or the file failed (full disk, bad path, unavailable codec)."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_

    @property
    def disk_full(self) -> bool:
        return self.errno in (errno.ENOSPC, errno.EDQUOT)


class H264Writer:
    """Write masked frames to one H.264 MP4 file."""

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float,
        *,
        codec: Codec = "libx264",
        crf: int = 23,
        keyframe_s: float = 2.0,
        fragmented: bool = True,
        preset: str = "ultrafast",
        threads: int = 0,
    ) -> None:
        self.path = Path(path)
        self.width, self.height = width - width % 2, height - height % 2  # yuv420p needs even
        self.frames_written = 0
        self.fragments = 0  # keyframes muxed: each one completes the fragment before it
        self._last_pts = -1
        self._pts0: float | None = None
        self._good_size = 0  # file size at the end of the last complete fragment
        self._fragmented = fragmented
        name = choose_codec(codec)
        options = (
            {"movflags": FRAGMENTED, "flush_packets": "1"}
            if fragmented
            else {"movflags": "+faststart"}
        )
        try:
            self._container = av.open(str(self.path), mode="w", format="mp4", options=options)
            try:
                self._stream = self._open_stream(name, fps, crf, keyframe_s, preset, threads)
            except Exception:
                if name == "libx264":
                    raise
                log.warning(
                    "hardware encoder failed to open, using libx264", extra=fields(codec=name)
                )
                self._stream = self._open_stream("libx264", fps, crf, keyframe_s, preset, threads)
        except (av.FFmpegError, OSError) as exc:
            container = getattr(self, "_container", None)
            if container is not None:
                with contextlib.suppress(Exception):
                    container.close()
            with contextlib.suppress(OSError):
                self.path.unlink()  # a file without a complete header plays nowhere
            self._container = None
            raise EncodeError(
                f"{self.path}: cannot open for writing: {exc}", getattr(exc, "errno", None)
            ) from None
        self.codec = self._stream.codec_context.name

    def _open_stream(
        self, name: str, fps: float, crf: int, keyframe_s: float, preset: str, threads: int
    ) -> av.VideoStream:
        stream = self._container.add_stream(name, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = self.width, self.height
        stream.pix_fmt = "yuv420p"
        stream.time_base = _TIME_BASE
        cc = stream.codec_context
        cc.time_base = _TIME_BASE
        cc.gop_size = max(1, round(fps * keyframe_s))
        if threads:
            cc.thread_count = threads
        if name == "libx264":
            gop = cc.gop_size
            cc.options = {
                "preset": preset,
                "tune": "zerolatency",
                "crf": str(crf),
                "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
            }
        else:
            cc.bit_rate = 4_000_000
        cc.open()
        return stream

    def write(self, frame: MaskedFrame) -> None:
        """Encode one masked frame; its ``pts`` (seconds) sets the presentation time."""
        frame = require_masked(frame)
        if self._pts0 is None:
            self._pts0 = frame.pts
        pts = round((frame.pts - self._pts0) / _TIME_BASE)
        pts = max(pts, self._last_pts + 1)  # MP4 needs strictly increasing timestamps
        self._last_pts = pts
        vf = self._to_yuv(frame.image)
        vf.pts = pts
        vf.time_base = _TIME_BASE
        if self._container is None:
            raise EncodeError(f"{self.path}: writer is closed")
        try:
            for packet in self._stream.encode(vf):
                self._container.mux(packet)
                if packet.is_keyframe and self._fragmented:
                    self._good_size = self._size()
                    self.fragments += 1
        except (av.FFmpegError, OSError) as exc:
            self._abandon()
            raise EncodeError(
                f"{self.path}: write failed: {exc}", getattr(exc, "errno", None)
            ) from None
        self.frames_written += 1

    def _to_yuv(self, bgr: np.ndarray) -> av.VideoFrame:
        """BGR pixels as the encoder's yuv420p frame, converted by OpenCV.

        Handing PyAV a bgr24 frame made it convert with libswscale inside ``encode`` (7.4 ms
        per 1080p frame here); ``cvtColor`` to I420 is 1.7 ms and releases the GIL.
        """
        img = bgr[: self.height, : self.width]
        yuv = cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420)
        return av.VideoFrame.from_ndarray(yuv, format="yuv420p")

    def _size(self) -> int:
        try:
            return os.path.getsize(self.path)
        except OSError:
            return self._good_size

    def _abandon(self) -> None:
        """After a failed write: close without caring, then cut back to the last fragment."""
        container, self._container = self._container, None
        if container is not None:
            with contextlib.suppress(Exception):
                container.close()
        if self._fragmented:
            try:
                if not self._good_size:
                    # the disk filled before the header and first keyframe were out: nothing in
                    # the file can play, so it goes rather than stay as a broken recording
                    os.unlink(self.path)
                elif os.path.getsize(self.path) > self._good_size:
                    os.truncate(self.path, self._good_size)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.error("cannot cut back a failed file", extra=fields(path=self.path, error=exc))

    def close(self) -> None:
        """Flush the encoder and finish the file. Safe to call twice."""
        if self._container is None:
            return
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
                if self._fragmented:
                    self._good_size = self._size()
        except (av.FFmpegError, OSError) as exc:
            log.error("flushing encoder failed", extra=fields(path=self.path, error=exc))
            self._abandon()
            raise EncodeError(
                f"{self.path}: close failed: {exc}", getattr(exc, "errno", None)
            ) from None
        container, self._container = self._container, None
        try:
            container.close()
        except (av.FFmpegError, OSError) as exc:
            self._container = container
            self._abandon()
            raise EncodeError(
                f"{self.path}: close failed: {exc}", getattr(exc, "errno", None)
            ) from None

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
