"""Frame sources: video file, RTSP/HTTP stream, V4L2 device, Raspberry Pi camera.

Each source yields raw BGR arrays. They are handed to the pipeline and never stored. A source
that fails raises :class:`SourceError`; the capture loop (``daemon.capture.runner``) retries it.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from daemon.capture.config import CameraConfig
from daemon.frames import Layout
from daemon.logs import fields

if TYPE_CHECKING:
    from daemon.media.decode import DecodedFrame

log = logging.getLogger(__name__)


class SourceError(Exception):
    """The source cannot be opened or stopped delivering frames; the message says which."""


class NoCameraError(SourceError):
    """``source: auto`` found no camera."""


@dataclass(frozen=True, slots=True)
class Grab:
    image: np.ndarray  # BGR, or planar YUV 4:2:0 when layout is "i420" (decoded video)
    pts: float | None  # seconds in the source's own clock (files), None for live sources
    layout: Layout = "bgr"


class Source(Protocol):
    name: str
    live: bool  # a camera or stream: frames come at their own pace and cannot wait

    def open(self) -> None: ...
    def read(self) -> Grab | None:
        """The next frame, or None at the end of a file played once. Raises SourceError."""

    def close(self) -> None: ...

    @property
    def fps(self) -> float | None: ...


def is_network(src: str) -> bool:
    return src.split("://", 1)[0].lower() in ("rtsp", "rtsps", "http", "https", "tcp", "udp")


class _DecodedSource:
    """Shared PyAV plumbing of file and network sources: open a reader, pull frames."""

    name: str

    def __init__(self, decoder: str = "auto") -> None:
        self._reader = None
        self._it = None
        self._fps: float | None = None
        self.decoder = decoder  # camera.decoder

    @property
    def hw_decode(self) -> bool:
        """The open stream is decoded in hardware (its CPU cost is a copy)."""
        return self._reader is not None and self._reader.decoder is not None

    @property
    def fps(self) -> float | None:
        return self._fps

    def _start(self, options: dict[str, str] | None = None, timeout_s: float | None = None) -> None:
        from daemon.media.decode import DecodeError, VideoReader

        try:
            self._reader = VideoReader(
                self.name, options=options, timeout_s=timeout_s, decoder=self.decoder
            )
        except DecodeError as exc:
            raise SourceError(str(exc)) from None
        self._fps = self._reader.fps
        self._it = self._reader.frames(yuv=True)  # half the bytes while frames queue

    def _next(self) -> DecodedFrame | None:
        """The next decoded frame, None at the end; a broken stream raises SourceError."""
        from daemon.media.decode import DecodeError

        assert self._it is not None
        try:
            return next(self._it, None)
        except DecodeError as exc:
            raise SourceError(str(exc)) from None

    def close(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception as exc:  # a dead connection may fail to close; it is gone anyway
                log.debug("closing stream failed", extra=fields(source=self.name, error=exc))
            self._reader = None
            self._it = None


class FileSource(_DecodedSource):
    """A video file, played once or looped, at its own frame rate or as fast as possible."""

    live = False

    def __init__(self, path: str, *, loop: bool, realtime: bool, decoder: str = "auto") -> None:
        super().__init__(decoder)
        self.name = path
        self.loop = loop
        self.realtime = realtime
        self._offset = 0.0  # pts added on each loop so time keeps increasing
        self._last_pts = 0.0
        self._t0: float | None = None

    def _open_reader(self) -> None:
        if not os.path.exists(self.name):
            raise SourceError(f"{self.name}: no such file")
        self._start()

    def open(self) -> None:
        self._open_reader()
        self._t0 = None

    def read(self) -> Grab | None:
        df = self._next()
        if df is None:
            if not self.loop:
                return None
            self.close()
            self._offset = self._last_pts + 1.0 / (self._fps or 25.0)
            self._open_reader()
            df = self._next()
            if df is None:
                raise SourceError(f"{self.name}: no frames")
        pts = df.pts + self._offset
        self._last_pts = pts
        if self.realtime:
            now = time.monotonic()
            if self._t0 is None:
                self._t0 = now - pts
            wait = self._t0 + pts - now
            if wait > 0:
                time.sleep(wait)  # pacing a file to its own frame rate
        return Grab(df.image, pts, df.layout)


class NetworkSource(_DecodedSource):
    """RTSP or HTTP(S) through PyAV, RTSP over TCP, with connect and read timeouts."""

    live = True

    def __init__(self, url: str, *, timeout_s: float, decoder: str = "auto") -> None:
        super().__init__(decoder)
        self.name = url
        self.timeout_s = timeout_s

    def open(self) -> None:
        us = str(int(self.timeout_s * 1_000_000))
        scheme = self.name.split("://", 1)[0].lower()
        options = {"rw_timeout": us}
        if scheme.startswith("rtsp"):
            options = {"rtsp_transport": "tcp", "timeout": us}
        self._start(options, self.timeout_s)

    def read(self) -> Grab | None:
        df = self._next()
        if df is None:  # a live stream that ends has been lost
            raise SourceError(f"{self.name}: stream ended")
        return Grab(df.image, None, df.layout)


class V4L2Source:
    """A USB webcam or other V4L2 device through OpenCV."""

    live = True

    def __init__(self, device: str, cfg: CameraConfig) -> None:
        self.name = device
        self.cfg = cfg
        self._cap = None

    @property
    def fps(self) -> float | None:
        if self._cap is None:
            return self.cfg.fps
        import cv2

        v = float(self._cap.get(cv2.CAP_PROP_FPS) or 0)
        return v if v > 0 else self.cfg.fps

    def open(self) -> None:
        import cv2

        cap = cv2.VideoCapture(self.name, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.name}: cannot open V4L2 device")
        if self.cfg.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
        if self.cfg.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
        if self.cfg.fps:
            cap.set(cv2.CAP_PROP_FPS, self.cfg.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap

    def read(self) -> Grab | None:
        assert self._cap is not None
        ok, img = self._cap.read()
        if not ok or img is None:
            raise SourceError(f"{self.name}: no frame from device")
        return Grab(img, None)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class Picamera2Source:
    """The Raspberry Pi camera through picamera2 (apt python3-picamera2), imported lazily."""

    live = True
    name = "picamera2"

    def __init__(self, cfg: CameraConfig) -> None:
        self.cfg = cfg
        self._cam = None

    @property
    def fps(self) -> float | None:
        return self.cfg.fps

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise SourceError(
                f"picamera2 is not installed ({exc}); on Pi OS: apt install python3-picamera2 "
                "and create the venv with --system-site-packages"
            ) from None
        try:
            cam = Picamera2()
            size = (self.cfg.width or 1280, self.cfg.height or 720)
            controls = {"FrameRate": self.cfg.fps} if self.cfg.fps else {}
            # libcamera's "RGB888" is B, G, R in memory: what OpenCV calls BGR
            conf = cam.create_video_configuration(
                main={"size": size, "format": "RGB888"}, controls=controls
            )
            cam.configure(conf)
            cam.start()
        except Exception as exc:  # libcamera raises RuntimeError and friends
            raise SourceError(f"picamera2: cannot start camera: {exc}") from None
        self._cam = cam

    def read(self) -> Grab | None:
        assert self._cam is not None
        try:
            img = self._cam.capture_array("main")
        except Exception as exc:
            raise SourceError(f"picamera2: capture failed: {exc}") from None
        if img is None:
            raise SourceError("picamera2: no frame")
        if img.ndim == 3 and img.shape[2] == 4:  # XBGR8888 layouts carry a padding channel
            img = img[:, :, :3]
        return Grab(np.ascontiguousarray(img), None)

    def close(self) -> None:
        if self._cam is not None:
            cam, self._cam = self._cam, None
            for step in (cam.stop, cam.close):
                try:
                    step()
                except Exception as exc:
                    log.debug("picamera2 shutdown step failed", extra=fields(error=exc))


def picamera2_present() -> bool:
    """True when picamera2 imports and reports at least one camera."""
    try:
        from picamera2 import Picamera2
    except ImportError:
        return False
    try:
        return bool(Picamera2.global_camera_info())
    except Exception:
        return False


def v4l2_devices() -> list[str]:
    return sorted(glob.glob("/dev/video*"), key=lambda p: (len(p), p))


def first_working_v4l2() -> str | None:
    """The first /dev/video* that opens and delivers a frame (skips codec/metadata nodes)."""
    import cv2

    for dev in v4l2_devices():
        cap = cv2.VideoCapture(dev, cv2.CAP_V4L2)
        try:
            if cap.isOpened():
                ok, _ = cap.read()
                if ok:
                    return dev
        finally:
            cap.release()
    return None


def resolve_auto() -> str:
    """``auto``: the Pi camera if there is one, else the first working V4L2 device."""
    if picamera2_present():
        return "picamera2"
    dev = first_working_v4l2()
    if dev is not None:
        return dev
    raise NoCameraError(
        "source auto: no camera found (no picamera2 camera, no working /dev/video*); "
        "set camera.source to a device, an rtsp:// URL or a video file"
    )


def make_source(cfg: CameraConfig, source: str | None = None) -> Source:
    """Build the source named by ``source`` (default ``cfg.source``); ``auto`` is resolved."""
    src = source or cfg.source
    if src == "auto":
        src = resolve_auto()
        log.info("camera found", extra=fields(source=src))
    if src == "picamera2":
        return Picamera2Source(cfg)
    if is_network(src):
        return NetworkSource(src, timeout_s=cfg.open_timeout_s, decoder=cfg.decoder)
    if src.startswith("/dev/video") or src.isdigit():
        return V4L2Source(src if not src.isdigit() else f"/dev/video{src}", cfg)
    if Path(src).is_char_device() if Path(src).exists() else False:
        return V4L2Source(src, cfg)
    return FileSource(src, loop=cfg.loop, realtime=cfg.realtime, decoder=cfg.decoder)
