"""JPEG snapshots for Home Assistant's camera entity, made from masked frames only.

The frame comes from the pipeline's output, after the masker: the same object the recorder is
given, so a snapshot shows exactly what is recorded (faces masked, or the whole picture
obscured by the gate or by privacy mode). :func:`encode_snapshot` refuses anything else.
"""

from __future__ import annotations

import cv2
import numpy as np

from daemon.frames import MaskedFrame, require_masked


class SnapshotError(Exception):
    """The frame could not be encoded."""


def encode_snapshot(frame: MaskedFrame, *, quality: int = 80, max_width: int = 0) -> bytes:
    """JPEG bytes of a masked frame, downscaled to ``max_width`` (0: full size)."""
    frame = require_masked(frame)
    image: np.ndarray = frame.image
    if max_width and image.shape[1] > max_width:
        h = max(1, round(image.shape[0] * max_width / image.shape[1]))
        # INTER_AREA averages: a downscale can only blur a masked area further, never unmask it
        image = cv2.resize(image, (max_width, h), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise SnapshotError(f"JPEG encoding failed for {frame!r}")
    return buf.tobytes()
