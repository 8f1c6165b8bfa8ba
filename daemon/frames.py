"""Frame types: the raw camera frame and the only frame type allowed to leave the process.

Privacy rule 1 is made structural here. ``MaskedFrame`` can only be constructed with a key that
is handed out exactly once, to the masker (``daemon.mask.masker``). Every sink (recorder,
snapshotter, MQTT) accepts ``MaskedFrame`` only and checks it with :func:`require_masked`, so a
raw :class:`Frame` cannot reach disk or a socket by mistake. Pixel arrays of a ``MaskedFrame``
are read-only, so nobody can paint raw pixels back into one after masking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

if TYPE_CHECKING:
    from daemon.escrow.seal import SealedFrame
    from daemon.regions import Region


Layout = Literal["bgr", "i420"]


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """A raw frame straight from a source. It lives in memory only and is never logged.

    ``pixels`` are BGR (H x W x 3), or, for decoded video (``layout="i420"``), the decoder's
    planar YUV 4:2:0 (H * 3/2 x W): half the bytes while the frame waits in the pipeline's
    queue for its detection (3.1 instead of 6.2 MB at 1080p). :attr:`image` gives BGR either way.
    """

    pixels: np.ndarray = field(repr=False)
    index: int
    pts: float  # seconds since the source started
    captured: float  # time.monotonic() when the frame was captured
    layout: Layout = "bgr"

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        h = int(self.pixels.shape[0])
        return h * 2 // 3 if self.layout == "i420" else h

    @property
    def image(self) -> np.ndarray:
        """BGR pixels: the stored array itself, or a new one converted from YUV."""
        if self.layout == "i420":
            return cv2.cvtColor(self.pixels, cv2.COLOR_YUV2BGR_I420)
        return self.pixels

    def bgr_copy(self) -> np.ndarray:
        """A new, writable BGR array (converting YUV makes one anyway; BGR is copied)."""
        return self.image if self.layout == "i420" else self.pixels.copy()

    def __repr__(self) -> str:  # never let pixels into a log line
        return f"Frame(index={self.index}, pts={self.pts:.3f}, {self.width}x{self.height})"


class _MaskerKey:
    """Capability object; whoever holds the single instance may construct ``MaskedFrame``."""

    __slots__ = ()


_KEY: _MaskerKey | None = _MaskerKey()


def claim_masker_key() -> _MaskerKey:
    """Hand the construction key to the masker. Works once per process; a second claim fails."""
    global _KEY
    key, _KEY = _KEY, None
    if key is None:
        raise RuntimeError("the MaskedFrame key has already been claimed by the masker")
    return key


class MaskedFrame:
    """A frame whose faces and zones have been masked (or which is fully obscured).

    The only frame type the recorder, the snapshotter and MQTT accept.
    """

    __slots__ = ("_image", "captured", "index", "obscured", "pts", "reason", "regions", "sealed")

    def __init__(
        self,
        key: object,
        image: np.ndarray,
        *,
        index: int,
        pts: float,
        captured: float,
        regions: Sequence[Region] = (),
        obscured: bool = False,
        reason: str = "",
        sealed: SealedFrame | None = None,
    ) -> None:
        if not isinstance(key, _MaskerKey):
            raise TypeError("MaskedFrame can only be made by the masker")
        image = np.ascontiguousarray(image)
        image.flags.writeable = False
        self._image = image
        self.index = index
        self.pts = pts
        self.captured = captured
        self.regions: tuple[Region, ...] = tuple(regions)
        self.obscured = obscured  # True when the whole picture was blanked (gate, privacy mode)
        self.reason = reason  # why it was obscured: "", "privacy", "detection-missing", ...
        self.sealed = sealed  # escrow: the masked regions' originals, as ciphertext only

    @property
    def image(self) -> np.ndarray:
        """Read-only BGR pixels, already masked."""
        return self._image

    @property
    def width(self) -> int:
        return int(self._image.shape[1])

    @property
    def height(self) -> int:
        return int(self._image.shape[0])

    def __repr__(self) -> str:
        return (
            f"MaskedFrame(index={self.index}, pts={self.pts:.3f}, {self.width}x{self.height}, "
            f"regions={len(self.regions)}, obscured={self.obscured})"
        )


def require_masked(frame: object) -> MaskedFrame:
    """Guard used by every sink: refuse anything that did not come out of the masker."""
    if not isinstance(frame, MaskedFrame):
        raise TypeError(f"refusing {type(frame).__name__}: only MaskedFrame may leave the process")
    return frame
