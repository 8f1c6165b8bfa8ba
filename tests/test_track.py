"""Tracker: masks persist between detections, after loss, and before a face is first seen."""

from __future__ import annotations

from daemon.regions import Box, Detection
from daemon.track.config import TrackConfig
from daemon.track.tracker import Tracker

FPS = 25.0


def covers(outer: Box, inner: Box) -> bool:
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and outer[0] + outer[2] >= inner[0] + inner[2]
        and outer[1] + outer[3] >= inner[1] + inner[3]
    )


def face(x: float, y: float = 100.0, s: float = 60.0) -> Detection:
    return Detection((x, y, s, s), 0.9)


def t(i: int) -> float:
    return i / FPS


def test_face_detected_in_n_stays_masked_in_n_plus_1_when_missed() -> None:
    tr = Tracker(TrackConfig())
    tr.update(10, t(10), [face(200)])
    tr.update(11, t(11), [])  # detector missed it
    boxes = tr.boxes_at(11, t(11))
    assert len(boxes) == 1
    assert covers(boxes[0].box, face(200).box)


def test_mask_is_kept_hold_s_then_released() -> None:
    tr = Tracker(TrackConfig(hold_s=1.0))
    tr.update(0, t(0), [face(200)])
    assert tr.boxes_at(24, t(24))  # 0.96 s later: still held
    assert not tr.boxes_at(26, t(26))  # 1.04 s later: released
    tr.prune(26, t(26))
    assert tr.tracks == []


def test_moving_face_between_two_detections_is_covered_at_every_frame() -> None:
    """Detections every 4 frames; the true face moves 10 px per frame to the right."""
    tr = Tracker(TrackConfig())
    truth = {i: face(100 + 10 * i) for i in range(13)}
    for i in (0, 4, 8, 12):
        tr.update(i, t(i), [truth[i]])
    for i in range(13):
        boxes = tr.boxes_at(i, t(i))
        assert len(boxes) == 1, i
        assert covers(boxes[0].box, truth[i].box), (i, boxes[0].box, truth[i].box)


def test_lost_moving_face_mask_grows_with_its_motion() -> None:
    tr = Tracker(TrackConfig())
    for i in (0, 2, 4):
        tr.update(i, t(i), [face(100 + 10 * i)])  # 10 px/frame = 250 px/s
    for i in range(5, 15):  # detector misses it from here; it keeps moving (100 px further)
        box = tr.boxes_at(i, t(i))[0].box
        assert covers(box, face(100 + 10 * i).box), i


def test_frames_before_first_detection_are_covered() -> None:
    """A face first seen at frame 5: frames 3 and 4 (held back) are masked around it."""
    tr = Tracker(TrackConfig())
    tr.update(0, t(0), [])
    tr.update(5, t(5), [face(300)])
    for i in (3, 4):
        boxes = tr.boxes_at(i, t(i))
        assert len(boxes) == 1
        assert covers(boxes[0].box, face(300).box)
        # with unknown speed it is grown, so a face drifting a few px per frame stays inside
        assert covers(boxes[0].box, face(300 - 4 * (5 - i)).box)


def test_two_faces_keep_separate_ids() -> None:
    tr = Tracker(TrackConfig())
    tr.update(0, t(0), [face(100), face(600)])
    tr.update(3, t(3), [face(606), face(103)])
    ids = {round(b.box[0]): b.track_id for b in tr.boxes_at(3, t(3))}
    assert ids[103] == 1 and ids[606] == 2


def test_results_out_of_order_are_ignored() -> None:
    tr = Tracker(TrackConfig())
    tr.update(5, t(5), [face(100)])
    tr.update(3, t(3), [face(500)])
    assert len(tr.tracks) == 1


def test_mismatched_detections_cannot_blow_a_mask_up() -> None:
    """Two detections that imply an absurd speed must not make a picture-wide mask."""
    tr = Tracker(TrackConfig())
    for i in (0, 1, 2):  # matched: implies 250 px/s = 12.5 face sizes/s
        tr.update(i, t(i), [face(100 + 10 * i, s=20)])
    assert len(tr.tracks) == 1
    box = tr.boxes_at(51, t(51))[0].box  # 1.96 s after the last hit, still held
    # at most: the face, 2 sizes of travel, 2 sizes of motion growth per side,
    # and lost growth 0.25/s over 2 s
    assert box[2] <= 20 + 2 * 20 + 2 * 2 * 20 + 0.25 * 2 * 20
    assert box[3] <= 20 + 2 * 2 * 20 + 0.25 * 2 * 20
