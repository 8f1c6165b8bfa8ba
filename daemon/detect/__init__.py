"""Face detection on the device: int8 TFLite models over a whole-frame pass and tiles.

``build_detector(cfg)`` checks the model against its manifest (raising ``ModelError`` when it is
missing or altered) and returns a :class:`Detector` whose ``detect(image_bgr)`` gives faces in
the image's own pixel coordinates. Each backend is one module with its own config model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from daemon.detect.config import DetectConfig, ScheduleConfig
from daemon.detect.errors import DetectorError, ModelError
from daemon.detect.manifest import verified_model
from daemon.detect.tiling import TiledDetector, WindowModel
from daemon.regions import Detection

__all__ = ["Detection", "Detector", "DetectorError", "ModelError", "build_detector"]


class Detector:
    """Finds faces in BGR images of any size. Not thread-safe: one caller at a time."""

    def __init__(self, tiled: TiledDetector, name: str) -> None:
        self._tiled = tiled
        self.name = name

    @property
    def input_size(self) -> tuple[int, int]:
        return self._tiled.width, self._tiled.height

    def use_schedule(self, schedule: ScheduleConfig) -> None:
        """Run later frames with this schedule (a detection profile chosen for the camera)."""
        self._tiled.schedule = schedule
        self._tiled.reset()

    @property
    def last_runs(self) -> int:
        """Model runs the last ``detect`` call made (tiles may be gated or rotated)."""
        return self._tiled.last_runs

    def windows(self, width: int, height: int, *, still: bool = False) -> int:
        """How many model runs a frame (or, with ``still``, a single image) of this size costs
        at most (the tile gate may skip some)."""
        return len(self._tiled.windows(width, height, still))

    def detect(
        self, image_bgr: np.ndarray, *, stream: bool = False, still: bool = False
    ) -> list[Detection]:
        """Faces as x, y, w, h float boxes in ``image_bgr`` pixels. Raises DetectorError.

        ``stream=True`` is for consecutive video frames: with ``schedule.tile_every`` N > 1
        each call runs the whole-frame pass and 1/N of the tiles, and reuses the other tiles'
        latest faces (at most N - 1 frames old). Single images must leave it False.
        ``still=True`` is for a single photo: its tiles use ``schedule.still_tile_scales``
        (finer than a video frame's: a photo has no next frame and no tracker to catch a face
        missed now, and no frame rate to keep).
        """
        if (
            not isinstance(image_bgr, np.ndarray)
            or image_bgr.ndim != 3
            or image_bgr.shape[2] != 3
            or image_bgr.dtype != np.uint8
            or min(image_bgr.shape[:2]) < 1
        ):
            shape = getattr(image_bgr, "shape", None)
            raise DetectorError(f"expected an HxWx3 uint8 BGR image, got {shape}")
        try:
            boxes, scores = self._tiled.detect_xyxy(image_bgr, stream, still)
        except DetectorError:
            raise
        except Exception as exc:  # an interpreter failure must reach the fail-closed gate
            raise DetectorError(f"{self.name}: detection failed: {exc}") from exc
        h, w = image_bgr.shape[:2]
        out = []
        for (x1, y1, x2, y2), s in zip(boxes.tolist(), scores.tolist(), strict=True):
            x1, y1 = max(0.0, x1), max(0.0, y1)
            x2, y2 = min(float(w), x2), min(float(h), y2)
            if x2 - x1 >= 1 and y2 - y1 >= 1:
                out.append(Detection((x1, y1, x2 - x1, y2 - y1), float(s)))
        return out

    def reset(self) -> None:
        """Start a new stream: tiles not yet run on it contribute nothing."""
        self._tiled.reset()

    def close(self) -> None:
        self._tiled.close()


def build_detector(cfg: DetectConfig | None = None) -> Detector:
    """The configured backend over verified models. Raises ModelError if a model is not right."""
    from daemon.detect.profiles import concrete

    cfg = concrete(cfg or DetectConfig())
    make: Callable[[int], WindowModel]
    if cfg.backend == "centerface":
        from daemon.detect.centerface import CenterFaceModel

        info = verified_model(cfg.centerface.model, cfg.models_dir)
        bcfg = cfg.centerface
        nms_iou = bcfg.nms_iou

        def make(threads: int) -> WindowModel:
            return CenterFaceModel(info, bcfg, threads)

    elif cfg.backend == "blazeface":
        from daemon.detect.blazeface import BlazeFaceModel

        info = verified_model(cfg.blazeface.model, cfg.models_dir)
        bzcfg = cfg.blazeface
        nms_iou = bzcfg.nms_iou

        def make(threads: int) -> WindowModel:
            return BlazeFaceModel(info, bzcfg, threads)

    else:  # pragma: no cover - the config's Literal prevents it
        raise ModelError(f"unknown detector backend {cfg.backend!r}")
    return Detector(TiledDetector(make, cfg.schedule, cfg.threads, nms_iou), info.name)
