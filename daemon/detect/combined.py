"""The detector the service runs: faces on every run, people on every Nth, one fail-closed result.

A detection result for a frame is the face model's result plus, on the runs where it is due, the
person model's. Either failing fails the whole result (DetectorError), so the gate obscures the
frames it would have covered (privacy rule 2: every enabled detector's result must be in). On the
runs between person passes, people are carried by their tracks (``track.hold_s``, never less
than the gate deadline), as faces are between detections: with ``detect.people.every`` N and
``max_gap_s`` G, a person's newest observation is at most N - 1 detector runs and G seconds of
video old. A failed person pass is retried on the very next run. ``face_veto`` (off by default)
drops weak faces that no person surrounds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from daemon.detect import Detector, DetectorError, build_detector
from daemon.detect.config import DetectConfig
from daemon.detect.ssd_people import PeopleDetector
from daemon.regions import Detection


class FrameDetector:
    """Face detector plus (optional) person detector behind one ``detect``."""

    def __init__(
        self,
        faces: Detector,
        people: PeopleDetector | None,
        every: int = 1,
        max_gap_s: float | None = None,
    ) -> None:
        self.faces = faces
        self.people = people
        self.every = max(1, every)
        self.max_gap_s = max_gap_s
        self.face_veto = 0.0  # see PeopleConfig.face_veto
        self._people: list[Detection] = []  # the last person pass's people
        self._since = 0  # face runs since the last person pass
        self._last_pts: float | None = None  # video time of the last person pass
        self._due = True
        # Called with each new frame size before that frame is searched: the concrete config
        # of the detection profile fitted to the camera (daemon.detect.profiles.choose).
        self.chooser: Callable[[int, int], tuple[DetectConfig, Any]] | None = None
        self.choice: Any = None  # the chooser's last Choice (its stats go to MQTT)
        self._size: tuple[int, int] | None = None

    def __getattr__(self, name: str) -> Any:  # name, input_size, windows, last_runs, ...
        return getattr(self.faces, name)

    def detect(
        self,
        image_bgr: np.ndarray,
        *,
        stream: bool = False,
        still: bool = False,
        pts: float | None = None,
    ) -> list[Detection]:
        """``pts``: the frame's video time; with ``max_gap_s`` a person pass also runs once
        that much video time has passed since the last one, however few runs that took."""
        self._fit(getattr(image_bgr, "shape", ()))
        found = self.faces.detect(image_bgr, stream=stream, still=still)
        if self.people is None:
            return found
        late = (
            self.max_gap_s is not None
            and pts is not None
            and self._last_pts is not None
            and pts - self._last_pts >= self.max_gap_s
        )
        if not (self._due or still or late or self._since >= self.every - 1):
            self._since += 1
            return self._veto(found, image_bgr.shape)
        self._due = True  # stays due until a pass succeeds
        people = self.people.detect(image_bgr)  # raises DetectorError
        self._due, self._since, self._last_pts = False, 0, pts
        self._people = [d for d in people if d.label == "person"]
        return [*self._veto(found, image_bgr.shape), *people]

    def fit_with(self, chooser: Callable[[int, int], tuple[DetectConfig, Any]]) -> None:
        """Choose the schedule with ``chooser`` again at the next frame, whatever its size."""
        self.chooser, self._size = chooser, None

    def _fit(self, shape: tuple[int, ...]) -> None:
        if self.chooser is None or len(shape) != 3:
            return  # no chooser (veilcam mask, eval), or not an image: detect() says so
        size = (int(shape[1]), int(shape[0]))
        if size == self._size:
            return
        self._size = size
        cfg, self.choice = self.chooser(*size)
        self.faces.use_schedule(cfg.schedule)
        if self.people is not None:
            self.people.cfg = cfg.people

    def _veto(self, found: list[Detection], shape: tuple[int, ...]) -> list[Detection]:
        """Weak faces need a person around them (a face has a head, a head a body), unless
        the frame's edge may have cut that body off. Strong faces are always kept."""
        if self.face_veto <= 0:
            return found
        h, w = shape[:2]
        out = []
        for d in found:
            x, y, bw, bh = d.box
            cx, cy = x + bw / 2, y + bh / 2
            edge = x <= 1 or y <= 1 or x + bw >= w - 1 or y + bh >= h - 1
            if (
                d.label != "face"
                or d.score >= self.face_veto
                or edge
                or any(
                    p.box[0] - p.box[2] / 4 <= cx <= p.box[0] + 1.25 * p.box[2]
                    and p.box[1] - p.box[3] / 4 <= cy <= p.box[1] + 1.25 * p.box[3]
                    for p in self._people
                )
            ):
                out.append(d)
        return out

    def reset(self) -> None:
        self.faces.reset()
        self._due, self._since = True, 0

    def close(self) -> None:
        self.faces.close()
        if self.people is not None:
            self.people.close()


def build_frame_detector(cfg: DetectConfig, every: int | None = None) -> FrameDetector:
    """Faces always; people when ``detect.people.enabled``, on every ``every``-th run (default
    ``detect.people.every``). Raises ModelError like :func:`daemon.detect.build_detector` when a
    model is missing or altered. Null profile keys get the configured profile's values (auto:
    full); the service then fits the profile to the board at the first frame (``chooser``)."""
    from daemon.detect.profiles import concrete

    cfg = concrete(cfg)
    faces = build_detector(cfg)
    people = None
    if cfg.people.enabled:
        people = PeopleDetector(cfg.people, cfg.models_dir, cfg.threads)
    gap = cfg.people.max_gap_s if every is None else None
    det = FrameDetector(faces, people, every or cfg.people.every, gap)
    det.face_veto = cfg.people.face_veto if people is not None else 0.0
    return det


def detect_frame(detector: Any, image: np.ndarray, pts: float) -> list[Detection]:
    """The pipeline's call: a FrameDetector also gets the frame's video time."""
    if isinstance(detector, FrameDetector):
        return detector.detect(image, pts=pts)
    return detector.detect(image)


__all__ = ["DetectorError", "FrameDetector", "build_frame_detector", "detect_frame"]
