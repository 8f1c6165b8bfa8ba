"""Decode video files and network streams to BGR arrays through PyAV.

Used by file and network capture sources and by ``veilcam mask``. Decoded frames are raw: they
go to the detector and the masker, nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from daemon.frames import Layout
from daemon.logs import fields

log = logging.getLogger(__name__)

HW_DECODER = "h264_v4l2m2m"  # the Pi 4's H.264 decoder (bcm2835-codec, /dev/video10)
HW_DEVICE = Path("/dev/video10")


def hardware_decoder_available() -> bool:
    """True where the Pi 4's V4L2 M2M H.264 decoder exists (the Pi 5 has none for H.264)."""
    try:
        av.codec.Codec(HW_DECODER, "r")
    except Exception:
        return False
    return HW_DEVICE.exists()


def choose_decoder(requested: str, codec: str) -> str | None:
    """The decoder for a stream of ``codec``: None for FFmpeg's own software decoder. ``auto``
    takes the hardware one for H.264 where it exists; a named one is taken as asked."""
    if requested == "software":
        return None
    if requested == "auto":
        return HW_DECODER if codec == "h264" and hardware_decoder_available() else None
    return requested


class DecodeError(Exception):
    """A file or stream that cannot be opened or decoded; the message names it."""


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    image: np.ndarray = field(repr=False)  # BGR uint8, or planar YUV 4:2:0 if layout is "i420"
    pts: float  # seconds from the start of the stream
    index: int  # 0-based decode order
    layout: Layout = "bgr"


def bgr(vf: av.VideoFrame) -> np.ndarray:
    """The frame as BGR pixels, converted as the masker's frames are (the reveal uses it too).

    Camera and file H.264 is yuv420p: OpenCV converts it (BT.601, as the encoder's
    ``COLOR_BGR2YUV_I420`` converts back) with the GIL released, 2.6 ms less CPU per 1080p frame
    than libswscale's ``bgr24`` and half the wall time. Anything else goes through libswscale.
    """
    if _is_i420(vf):
        return cv2.cvtColor(vf.to_ndarray(), cv2.COLOR_YUV2BGR_I420)
    return vf.to_ndarray(format="bgr24")


def _is_i420(vf: av.VideoFrame) -> bool:
    return vf.format.name == "yuv420p" and vf.width % 2 == 0 and vf.height % 2 == 0


class VideoReader:
    """Iterate the frames of one video; ``options`` are FFmpeg demuxer options (e.g. RTSP)."""

    def __init__(
        self,
        source: str | Path,
        *,
        options: dict[str, str] | None = None,
        timeout_s: float | None = None,
        threads: int = 0,
        decoder: str = "software",
    ) -> None:
        """``decoder``: ``software`` (FFmpeg's own), ``auto`` (the Pi 4's hardware H.264
        decoder where it opens, else software) or an FFmpeg decoder's name."""
        self.source = str(source)
        try:
            self._container = av.open(
                self.source,
                options=options or {},
                timeout=timeout_s,
                metadata_errors="ignore",
            )
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise DecodeError(f"{self.source}: cannot open: {exc}") from None
        if not self._container.streams.video:
            self._container.close()
            raise DecodeError(f"{self.source}: no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        if threads:
            self._stream.codec_context.thread_count = threads
        self._auto = decoder == "auto"
        self.decoder = choose_decoder(decoder, self._stream.codec_context.name)
        self._ctx: av.CodecContext | None = None
        if self.decoder is not None:
            self._ctx = self._open_decoder(self.decoder)

    def _open_decoder(self, name: str) -> av.CodecContext | None:
        """A decoder of its own for this stream (the hardware one); None, with a warning, when
        ``auto`` asked for it and it does not open."""
        try:
            ctx = av.CodecContext.create(name, "r")
            src = self._stream.codec_context
            if src.extradata:
                ctx.extradata = src.extradata
            ctx.open()
            return ctx
        except (av.FFmpegError, OSError, ValueError) as exc:
            if not self._auto:
                self._container.close()
                raise DecodeError(f"{self.source}: decoder {name} does not open: {exc}") from None
            log.warning(
                "hardware decoder did not open, decoding in software",
                extra=fields(source=self.source, decoder=name, error=exc),
            )
            self.decoder = None
            return None

    @property
    def fps(self) -> float:
        """The stream's nominal frame rate (25 when the container does not say)."""
        rate: Fraction | None = self._stream.average_rate or self._stream.guessed_rate
        return float(rate) if rate else 25.0

    @property
    def frame_count(self) -> int:
        """Frames the container announces (0 when unknown, e.g. live streams)."""
        return int(self._stream.frames or 0)

    @property
    def size(self) -> tuple[int, int]:
        return int(self._stream.codec_context.width), int(self._stream.codec_context.height)

    def frames(self, *, yuv: bool = False) -> Iterator[DecodedFrame]:
        """Yield every decodable frame. A corrupt stream raises DecodeError naming the source.

        ``yuv``: yuv420p frames come as the decoder's planes (``layout="i420"``), converted to
        BGR only when needed (:class:`daemon.frames.Frame` does it); others are BGR anyway.
        """
        index = 0
        first: float | None = None
        tb = self._stream.time_base
        try:
            for vf in self._decoded():
                if vf.pts is not None and (vf.time_base or tb) is not None:
                    t = float(vf.pts * (vf.time_base or tb))
                else:
                    t = index / self.fps
                if first is None:
                    first = t
                if yuv and _is_i420(vf):
                    yield DecodedFrame(vf.to_ndarray(), t - first, index, "i420")
                else:
                    yield DecodedFrame(bgr(vf), t - first, index)
                index += 1
        except av.FFmpegError as exc:
            raise DecodeError(f"{self.source}: decode failed after {index} frames: {exc}") from None

    def _decoded(self) -> Iterator[av.VideoFrame]:
        """The stream's frames, from its own decoder or the one :meth:`_open_decoder` made.
        With ``auto``, a hardware decoder that fails before its first frame is dropped for
        software (the packet it failed on is decoded again there)."""
        if self._ctx is None:
            yield from self._container.decode(self._stream)
            return
        got = False
        for packet in self._container.demux(self._stream):
            try:
                frames = self._ctx.decode(packet if packet.size else None)
            except av.FFmpegError as exc:
                if got or not self._auto:
                    raise
                log.warning(
                    "hardware decoder failed, decoding in software",
                    extra=fields(source=self.source, decoder=self.decoder, error=exc),
                )
                self._ctx, self.decoder = None, None
                yield from self._stream.decode(packet)
                for rest in self._container.demux(self._stream):
                    yield from self._stream.decode(rest if rest.size else None)
                return
            for vf in frames:
                got = True
                yield vf

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
