"""The masker: the only code that may build a :class:`~daemon.frames.MaskedFrame` (rule 1).

It claims the construction key once, at import. ``regions`` turns detections into what will be
masked (margin, clipping, shape, plus the static privacy zones); ``mask`` hides them;
``obscure`` blanks a whole frame, which is what the fail-closed gate and privacy mode use.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from daemon.frames import Frame, MaskedFrame, claim_masker_key
from daemon.mask import styles
from daemon.mask.config import MaskConfig
from daemon.mask.people import mask_box
from daemon.regions import Box, Detection, Region

if TYPE_CHECKING:
    from daemon.escrow.seal import Sealer

_KEY = claim_masker_key()


def grow(box: Box, margin: float, frame_w: int, frame_h: int) -> tuple[int, int, int, int] | None:
    """``box`` scaled by ``margin`` about its centre, rounded outwards and clipped to the frame."""
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    gw, gh = w * margin, h * margin
    x1 = max(0, math.floor(cx - gw / 2))
    y1 = max(0, math.floor(cy - gh / 2))
    x2 = min(frame_w, math.ceil(cx + gw / 2))
    y2 = min(frame_h, math.ceil(cy + gh / 2))
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2 - x1, y2 - y1


class Masker:
    """Hides faces and zones in frames according to the ``mask`` config.

    With a ``sealer`` (escrow on), the originals of the regions about to be hidden are sealed
    from the masker's own copy of the frame before hiding: nothing unsealed leaves ``mask``.
    """

    def __init__(self, cfg: MaskConfig | None = None, sealer: Sealer | None = None) -> None:
        self.cfg = cfg or MaskConfig()
        self.sealer = sealer

    def zone_regions(self, frame_w: int, frame_h: int) -> list[Region]:
        out = []
        for z in self.cfg.zones:
            xs = [min(max(px, 0), frame_w) for px, _ in z.points]
            ys = [min(max(py, 0), frame_h) for _, py in z.points]
            x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
            if x2 > x1 and y2 > y1:
                out.append(
                    Region(
                        (x1, y1, x2 - x1, y2 - y1),
                        label="zone",
                        shape="polygon",
                        points=tuple((int(px), int(py)) for px, py in z.points),
                    )
                )
        return out

    def regions(
        self, found: Iterable[Detection | Region | Box], frame_w: int, frame_h: int
    ) -> list[Region]:
        """What to mask: each face grown by the margin and clipped, then every static zone.

        ``found`` may hold detections, regions (already grown, e.g. from the tracker; kept as
        they are apart from clipping) or bare x, y, w, h boxes.
        """
        out: list[Region] = []
        for item in found:
            if isinstance(item, Region):
                box = grow(item.box, 1.0, frame_w, frame_h)
                if box is not None:
                    out.append(
                        Region(
                            box,
                            item.label,
                            item.shape,
                            item.score,
                            item.det,
                            item.points,
                            item.track_id,
                        )
                    )
                continue
            if isinstance(item, Detection):
                det, score, label = item.box, item.score, item.label
                if score < self.cfg.min_score:
                    continue
                part = mask_box(label, det, self.cfg.people)
                if part is None:
                    continue
                det = part
            else:
                det, score, label = tuple(float(v) for v in item), None, "face"  # type: ignore[assignment]
            box = grow(det, self.cfg.margin, frame_w, frame_h)
            if box is not None:
                out.append(Region(box, label, self.cfg.shape, score, det))
        out.extend(self.zone_regions(frame_w, frame_h))
        return out

    def _hide(self, img: np.ndarray, r: Region) -> None:
        x, y, w, h = r.box
        roi = img[y : y + h, x : x + w]
        if roi.size == 0:
            return
        style = self.cfg.zone_style if r.label == "zone" else self.cfg.style
        if style == "blur":
            hidden = styles.blur(roi, self.cfg.blur_cells)
        elif style == "mosaic":
            hidden = styles.mosaic(roi, self.cfg.mosaic_cells)
        else:
            hidden = styles.fill(roi, self.cfg.color)
        if r.shape == "box":
            roi[:] = hidden
            return
        if r.shape == "polygon":
            m = styles.polygon_mask(r.points, x, y, w, h)
        else:
            m = styles.ellipse_mask(w, h)
        # cv2.copyTo writes into the view in place, ~24x faster than np.copyto(where=...)
        cv2.copyTo(hidden, m.astype(np.uint8, copy=False), roi)

    def apply(self, image: np.ndarray, regions: Sequence[Region]) -> np.ndarray:
        """A masked copy of ``image`` (the input is left untouched)."""
        return self._hide_all(image.copy(), regions)

    def _hide_all(
        self, out: np.ndarray, regions: Sequence[Region], inside: list[bool] | None = None
    ) -> np.ndarray:
        """Hide ``regions`` in ``out`` in place (``inside``: see :func:`_inside_another`)."""
        hidden_inside = _inside_another(regions) if inside is None else inside
        for r, skip in zip(regions, hidden_inside, strict=True):
            if not skip:
                self._hide(out, r)
        return out

    def mask(self, frame: Frame, regions: Sequence[Region]) -> MaskedFrame:
        """The frame with every region hidden. Faces first, zones last (zones always win)."""
        ordered = sorted(regions, key=lambda r: r.label == "zone")
        image = frame.bgr_copy()
        inside = _inside_another(ordered)
        sealed = None
        if self.sealer is not None:
            # a sealed region inside another sealed one is sealed with the outer one (in a
            # crowd, held and new tracks of one face nest: half the bytes)
            mine = [r for r in ordered if r.label in self.sealer.labels]
            outer = [r for r, skip in zip(mine, _inside_another(mine), strict=True) if not skip]
            sealed = self.sealer.seal(image, outer, frame.index, frame.pts)
        return MaskedFrame(
            _KEY,
            self._hide_all(image, ordered, inside),
            index=frame.index,
            pts=frame.pts,
            captured=frame.captured,
            regions=ordered,
            sealed=sealed,
        )

    def obscure(self, frame: Frame, reason: str) -> MaskedFrame:
        """The whole picture blacked out: for failed or late detection and for privacy mode."""
        return MaskedFrame(
            _KEY,
            np.zeros((frame.height, frame.width, 3), np.uint8),
            index=frame.index,
            pts=frame.pts,
            captured=frame.captured,
            obscured=True,
            reason=reason,
        )


# a corner must be this far inside an ellipse's outline to count as covered by its raster
_ELLIPSE_SLACK_PX = 2.0


def _inside_another(regions: Sequence[Region]) -> list[bool]:
    """Per region: is its whole box inside another face region's masked shape?

    Such a region is hidden already; hiding it again only re-blurs blurred pixels. In a crowd,
    held and new tracks of the same face nest: about half the regions of a 1080p crowd frame,
    a third of the masking time. Pixels covered are the same either way; the outer region's
    blur is the coarser one. Zones and polygons are always drawn and never count as containers.
    """
    n = len(regions)
    out = [False] * n
    idx = [i for i, r in enumerate(regions) if r.label != "zone" and r.shape != "polygon"]
    if len(idx) < 2:
        return out
    b = np.array([regions[i].box for i in idx], dtype=np.float64)
    x, y, w, h = b.T
    area = w * h
    ell = np.array([regions[i].shape == "ellipse" for i in idx])
    # corners of every box j: (m, 4) x and y
    cx4 = np.stack([x, x + w, x, x + w], axis=1)
    cy4 = np.stack([y, y, y + h, y + h], axis=1)
    # j inside box i
    in_box = (
        (x[:, None] <= x[None, :])
        & (y[:, None] <= y[None, :])
        & (x[:, None] + w[:, None] >= x[None, :] + w[None, :])
        & (y[:, None] + h[:, None] >= y[None, :] + h[None, :])
    )
    # j's four corners inside ellipse i (semi-axes shrunk by the raster slack)
    ax = np.maximum(w / 2 - _ELLIPSE_SLACK_PX, 1e-6)[:, None, None]
    ay = np.maximum(h / 2 - _ELLIPSE_SLACK_PX, 1e-6)[:, None, None]
    dx = (cx4[None, :, :] - (x + w / 2)[:, None, None]) / ax
    dy = (cy4[None, :, :] - (y + h / 2)[:, None, None]) / ay
    in_ell = ((dx * dx + dy * dy) <= 1.0).all(axis=2)
    inside = np.where(ell[:, None], in_ell, in_box)
    # only a larger region (or an equal one listed first) may contain: no mutual skipping
    order = np.arange(len(idx))
    bigger = (area[:, None] > area[None, :]) | (
        (area[:, None] == area[None, :]) & (order[:, None] < order[None, :])
    )
    covered = (inside & bigger).any(axis=0)
    for k, i in enumerate(idx):
        out[i] = bool(covered[k])
    return out
