"""No unmasked face in the recording: the real detector, real clips, the real daemon.

``veilcam run --fast`` records a clip; then the same detector looks for faces in the source
frames and in the recorded frames at the same index (with --fast and a file source the
recording's frame N is the source's frame N). Every face found in the source must be covered by
a masked region of that frame (or the frame must be obscured), and the detector must not find
that face again in the recording with its detail intact. The detector does find the blurred
oval of a masked head now and then, so "intact" is measured too, as the correlation of the
face box's fine detail (Laplacian of the grey image) between source and recording: a masked face
keeps none of it (at most 0.29 on these clips, 0.09 at the 95th percentile), while a face that
was only re-encoded keeps most (JPEG quality 75: at least 0.46; H.264 background ~0.6); 0.4 or
more counts as intact. Mean grey difference was tried first and fails for small low-contrast
faces in the GIF, whose blurred version differs from the source by less than 8 grey levels.

"Faces in the source" are detections with a score of at least 0.3 that persist into a
neighbouring frame (IoU > 0.3 at i-1 or i+1). The daemon detects only some frames, as on the
device; the detector's low threshold (recall first) also reports hands, shirts and windows for a
frame or two, which the daemon cannot be expected to catch on the frames it skips. On these
clips every real face scores 0.7-0.95 and every box below 0.3 is such a false positive (checked
by eye: again.mkv frame 7, walk.mkv frames 5-6 are hands; face-demographics-walking.gif has a
shirt pattern at 0.24 and a window at 0.1).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon.detect import build_detector
from daemon.detect.config import DetectConfig
from daemon.media.decode import VideoReader
from daemon.regions import iou
from tests._live import segments

REPO = Path(__file__).resolve().parent.parent

CLIPS = [
    "intel_asl_gestures/again.mkv",  # one person facing the camera, hands moving near the face
    "intel_asl_gestures/walk.mkv",
    "intel_previews/face-demographics-walking.gif",  # several people walking, small faces
]


@pytest.fixture(scope="module")
def detector():
    det = build_detector(DetectConfig())
    yield det
    det.close()


def frames(path: Path):
    with VideoReader(path) as r:
        for f in r.frames():
            yield f.image


INTACT_DETAIL = 0.4
SOURCE_FACE_SCORE = 0.3


def detail_kept(a: np.ndarray, b: np.ndarray, box) -> float:
    """Correlation of the fine detail (Laplacian) of two frames over ``box``: 1 = same detail."""
    x, y, w, h = (round(v) for v in box)
    x, y = max(0, x), max(0, y)
    la, lb = (
        cv2.Laplacian(
            cv2.cvtColor(img[y : y + h, x : x + w], cv2.COLOR_BGR2GRAY).astype(np.float32),
            cv2.CV_32F,
        )
        for img in (a, b)
    )
    if la.size == 0:
        return 0.0
    la, lb = la - la.mean(), lb - lb.mean()
    return float((la * lb).sum() / np.sqrt((la * la).sum() * (lb * lb).sum() + 1e-6))


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def centre_inside(box, region) -> bool:
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    rx, ry, rw, rh = region
    return rx <= cx <= rx + rw and ry <= cy <= ry + rh


@pytest.mark.slow
@pytest.mark.parametrize("clip", CLIPS)
def test_no_face_of_the_source_is_visible_in_the_recording(
    clip: str, tmp_path: Path, data_dir: Path, detector
) -> None:
    src = data_dir / "videos" / clip
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"camera:\n  name: faces\nrecording:\n  path: {tmp_path / 'rec'}\n"
        "  min_free_percent: 0\nmqtt:\n  enabled: false\n"
    )
    regions_file = tmp_path / "regions.jsonl"
    r = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "--config", str(cfg), "--source", str(src),
         "--fast", "--regions", str(regions_file)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    regions = [json.loads(line) for line in regions_file.read_text().splitlines()]
    recorded = [img for seg in segments(tmp_path / "rec") for img in frames(seg)]
    source = list(frames(src))
    assert len(recorded) == len(source) == len(regions)

    found = [
        [d for d in detector.detect(img) if d.label == "face" and d.score >= SOURCE_FACE_SCORE]
        for img in source
    ]

    def persists(i: int, box) -> bool:
        near = [*found[max(0, i - 1) : i], *found[i + 1 : i + 2]]
        return any(iou(box, d.box) > 0.3 for ds in near for d in ds)

    source_faces = 0
    measure_checks = measure_flags = 0
    for i, (s_img, r_img, reg) in enumerate(zip(source, recorded, regions, strict=True)):
        assert reg["frame"] == i
        faces = [d for d in found[i] if persists(i, d.box)]
        if not faces:
            continue
        source_faces += len(faces)
        if reg.get("obscured"):
            continue  # the whole picture is black
        boxes = [x["box"] for x in reg["regions"]]
        for f in faces:
            assert any(centre_inside(f.box, b) for b in boxes), (i, f.box, boxes)
            assert detail_kept(s_img, r_img, f.box) < INTACT_DETAIL, (i, f.box, "face intact")
            # the measure can fail: the same face merely re-compressed counts as intact
            measure_checks += 1
            measure_flags += detail_kept(s_img, jpeg(s_img, 75), f.box) >= INTACT_DETAIL
        leaks = [
            (d.box, f.box)
            for d in detector.detect(r_img)
            for f in faces
            if iou(d.box, f.box) > 0.3 and detail_kept(s_img, r_img, f.box) >= INTACT_DETAIL
        ]
        assert not leaks, (i, leaks)
    assert source_faces >= len(source) // 2, "the clip should show faces in most frames"
    assert measure_flags >= 0.9 * measure_checks, (measure_flags, measure_checks)
