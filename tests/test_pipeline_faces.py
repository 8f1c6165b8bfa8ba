"""No unmasked face in the recording: the real detector, real clips, the real daemon.

``veilcam run --fast`` records a clip; then the same detector looks for faces in the source
frames and in the recorded frames at the same index (with --fast and a file source the
recording's frame N is the source's frame N). Every face found in the source must be covered by
a masked region of that frame (or the frame must be obscured), and the detector must not find
that face again in the recording with its pixels intact. The detector does find the blurred
oval of a masked head now and then (score ~0.5), so "intact" is measured too: the mean absolute
grey-level difference between source and recording over the face box is ~2 for a face that was
only re-encoded and ~20-30 for a masked one; below 8 counts as intact.

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


INTACT_MAD = 8.0
SOURCE_FACE_SCORE = 0.3


def mad(a: np.ndarray, b: np.ndarray, box) -> float:
    """Mean absolute grey difference of two frames over ``box``."""
    x, y, w, h = (round(v) for v in box)
    x, y = max(0, x), max(0, y)
    ga = cv2.cvtColor(a[y : y + h, x : x + w], cv2.COLOR_BGR2GRAY).astype(np.float32)
    gb = cv2.cvtColor(b[y : y + h, x : x + w], cv2.COLOR_BGR2GRAY).astype(np.float32)
    return float(np.abs(ga - gb).mean()) if ga.size else 255.0


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
            if min(f.box[2], f.box[3]) >= 24:  # big enough for the pixel check to mean much
                assert mad(s_img, r_img, f.box) >= INTACT_MAD, (i, f.box, "face left intact")
        leaks = [
            (d.box, f.box)
            for d in detector.detect(r_img)
            for f in faces
            if iou(d.box, f.box) > 0.3 and mad(s_img, r_img, f.box) < INTACT_MAD
        ]
        assert not leaks, (i, leaks)
    assert source_faces >= len(source) // 2, "the clip should show faces in most frames"
