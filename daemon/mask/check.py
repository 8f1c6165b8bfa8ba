"""Try a mask config on a small test frame before it replaces the running one.

A reload must keep the running config when the new one cannot be used (rule 5). Validation
bounds every value, but a masker that fails only on the first real frame would stop the daemon
(and under systemd restart it in a loop recording nothing), so a new mask config is built and
run once on a blank frame, with a face region and every zone, in the thread that reloads.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from daemon.frames import Frame
from daemon.mask.config import MaskConfig
from daemon.mask.masker import Masker
from daemon.regions import Detection

if TYPE_CHECKING:
    from daemon.escrow.seal import Sealer

SIZE = 64  # px: zones are clipped to the frame as they are on real frames


def checked_masker(cfg: MaskConfig, sealer: Sealer | None = None) -> Masker:
    """A masker for ``cfg`` that has masked a test frame; raises whatever the masker raises.

    The test frame is not sealed (``sealer`` is attached after), so it uses no sequence number.
    """
    masker = Masker(cfg)
    frame = Frame(np.zeros((SIZE, SIZE, 3), np.uint8), 0, 0.0, time.monotonic())
    face = Detection((SIZE / 4, SIZE / 4, SIZE / 2, SIZE / 2), 1.0)
    masker.mask(frame, masker.regions([face], SIZE, SIZE))
    masker.obscure(frame, "check")
    masker.sealer = sealer
    return masker
