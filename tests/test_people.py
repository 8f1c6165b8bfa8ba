"""The person detector (issue 13): model, decoder, tiling, masking, fail-closed, events, MQTT.

Real model, real PETS 2009 frames (../shared/data/people_pets09), real pipeline and a real
Mosquitto broker. Stand-ins appear only where a failure has to be provoked.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from daemon.capture.sources import FileSource
from daemon.config import Config
from daemon.detect import DetectorError, build_detector
from daemon.detect.combined import FrameDetector, build_frame_detector
from daemon.detect.config import DetectConfig
from daemon.detect.people_config import PeopleConfig
from daemon.detect.ssd_people import PeopleDetector, _Box, anchors, merge, windows
from daemon.frames import Frame
from daemon.mask.config import MaskConfig
from daemon.mask.masker import Masker
from daemon.mask.people import head_box
from daemon.mqtt.bridge import MQTTBridge
from daemon.pipeline import Pipeline
from daemon.regions import Detection
from tests._live import wait_for, write_clip
from tests._mqtt import Broker, Watcher

REPO = Path(__file__).resolve().parent.parent
MASKER = Masker()
sys.path.insert(0, str(REPO / "models"))


@pytest.fixture(scope="module")
def people() -> PeopleDetector:
    return PeopleDetector(PeopleConfig(), None, 2)


def _pets(data_dir: Path, n: int | None = None) -> list[dict[str, Any]]:
    root = data_dir / "people_pets09"
    lines = (root / "annotations.jsonl").read_text().splitlines()
    out = [json.loads(x) for x in lines][:n]
    for rec in out:
        rec["path"] = root / "images" / rec["image"]
    return out


# -- decoder --------------------------------------------------------------------------------


def test_anchors_follow_mediapipes_graph_for_this_model() -> None:
    """1917 anchors; the build script's independent copy of SsdAnchorsCalculator agrees."""
    import make_person

    a = anchors()
    assert a.shape == (1917, 4)
    assert np.allclose(a, make_person.ssd_anchors(), atol=1e-6)
    # lowest layer, 19x19 cells, 3 boxes: the first is 0.1 x 0.1 at the first cell's centre
    assert np.allclose(a[0], [0.5 / 19, 0.5 / 19, 0.1, 0.1], atol=1e-6)
    # last layer, one cell at the centre; its last box is the interpolated sqrt(0.95 * 1.0)
    assert np.allclose(a[-1, :2], [0.5, 0.5]) and np.isclose(a[-1, 2], np.sqrt(0.95), atol=1e-4)


def test_finds_the_annotated_people_on_pets_frames(data_dir: Path, people: PeopleDetector) -> None:
    hit = total = 0
    for rec in _pets(data_dir, 12):
        img = cv2.imread(str(rec["path"]))
        found = [d for d in people.detect(img) if d.label == "person"]
        assert {d.label for d in people.detect(img)} <= {"person", "car", "dog", "cat"}
        for p in rec["people"]:
            if p["ignore"]:
                continue
            total += 1
            hit += any(_iou(d.box, p["box"]) >= 0.5 for d in found)
    assert total > 40 and hit / total >= 0.85, (hit, total)


def _iou(a: Any, b: Any) -> float:
    from daemon.regions import iou

    return iou(tuple(a), tuple(b))


def test_partial_boxes_across_a_tile_cut_become_one_person() -> None:
    head = _Box("person", np.array([100, 50, 140, 200], np.float32), 0.5, (False,) * 3 + (True,))
    legs = _Box(
        "person", np.array([102, 190, 141, 330], np.float32), 0.4, (False, True, False, False)
    )
    other = _Box("person", np.array([400, 50, 440, 200], np.float32), 0.6, (False,) * 4)
    out = merge([head, legs, other], 0.45)
    assert len(out) == 2
    joined = next(b for b in out if b.xyxy[0] < 300)
    assert joined.xyxy.tolist() == [100, 50, 141, 330] and joined.score == 0.5
    # a partial box inside a whole box of the same person is dropped, not kept as a second one
    whole = _Box("person", np.array([100, 50, 141, 330], np.float32), 0.5, (False,) * 4)
    assert len(merge([whole, head], 0.45)) == 1


def test_windows_tile_large_frames_only() -> None:
    cfg = PeopleConfig()
    assert windows(320, 240, cfg) == [(0, 0, 320, 240)]
    wins = windows(1280, 720, cfg)
    assert len(wins) == 5
    xs = sorted({x for x, *_ in wins[1:]})
    assert xs[0] == 0 and wins[-1][0] + wins[-1][2] == 1280 and wins[-1][1] + wins[-1][3] == 720


def test_eval_people_command_meets_the_recall_floor(data_dir: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "daemon", "eval", "people", "--json",
         "--dataset", str(data_dir / "people_pets09")],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    assert res["images"] == 100 and res["people"] == 565 and res["ignored_boxes"] == 21
    assert res["recall"] >= 0.89 and res["recall_by_height"]["<80"] >= 0.87
    assert res["ap"] >= 0.83


# -- masking --------------------------------------------------------------------------------


def test_mask_people_heads_bodies_off_and_other_labels_never() -> None:
    person = Detection((100.0, 100.0, 50.0, 150.0), 0.5, "person")
    car = Detection((300.0, 100.0, 120.0, 80.0), 0.9, "car")
    hx, hy, hw, hh = head_box(person.box)
    # top 22 %, 60 % of the width but never narrower than the head is tall, centred
    assert (hy, hh) == (100.0, 0.22 * 150) and np.isclose(hw, 33.0)
    assert np.isclose(hx + hw / 2, 125.0)
    heads = Masker(MaskConfig(people="heads", shape="box")).regions([person, car], 640, 480)
    assert [r.label for r in heads] == ["person"]
    _, y, _, h = heads[0].box
    assert y <= 100 and y + h < 100 + 0.4 * 150  # the head only, grown by the margin
    bodies = Masker(MaskConfig(people="bodies", shape="box")).regions([person, car], 640, 480)
    assert bodies[0].box[3] >= 150
    assert Masker(MaskConfig(people="off")).regions([person, car], 640, 480) == []


# -- fail closed ----------------------------------------------------------------------------


class BrokenPeople:
    """Stands in for a person model whose interpreter fails on some runs."""

    def __init__(self, fail_on: set[int]) -> None:
        self.calls = 0
        self.fail_on = fail_on

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.calls += 1
        if self.calls in self.fail_on:
            raise DetectorError("person model failed")
        return [Detection((1.0, 1.0, 10.0, 30.0), 0.5, "person")]

    def close(self) -> None:
        pass


def test_a_failed_person_pass_fails_the_result_and_is_retried_next_run() -> None:
    faces = build_detector(DetectConfig())
    broken = BrokenPeople({2})
    det = FrameDetector(faces, broken, every=3)  # type: ignore[arg-type]
    img = np.full((240, 320, 3), 90, np.uint8)
    assert [d.label for d in det.detect(img)] == ["person"]  # run 1: people due
    assert det.detect(img) == [] and det.detect(img) == []  # runs 2, 3: faces only
    with pytest.raises(DetectorError):
        det.detect(img)  # run 4: the person pass fails -> the whole result fails
    assert [d.label for d in det.detect(img)] == ["person"]  # run 5: retried at once
    assert broken.calls == 3


def test_missing_person_model_stops_the_build(tmp_path: Path) -> None:
    from daemon.detect import ModelError

    models = tmp_path / "models"
    models.mkdir()
    for f in (REPO / "models").iterdir():
        if f.suffix in (".tflite", ".yaml"):
            (models / f.name).symlink_to(f)
    (models / "ssd_mobilenetv2_oidv4_int8.tflite").unlink()
    with pytest.raises(ModelError, match="ssd_mobilenetv2_oidv4"):
        build_frame_detector(DetectConfig(models_dir=models))
    # with people off, the face models alone are enough
    off = DetectConfig(models_dir=models, people=PeopleConfig(enabled=False))
    assert build_frame_detector(off).people is None


# -- pipeline and Home Assistant -------------------------------------------------------------


class Listener:
    def __init__(self) -> None:
        self.frames: list[tuple[int, list[Any]]] = []
        self.events: list[dict[str, Any]] = []

    def on_frame(self, frame: Any, faces: int) -> None:
        self.frames.append((frame.index, list(frame.regions)))

    def on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def on_stats(self, stats: dict[str, Any]) -> None:
        pass


VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")  # PETS 2009 S2.L1 (Debian)


@pytest.fixture(scope="module")
def pets_clip(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The first 100 frames of vtest.avi at its own pace; people_pets09 boxes every 8th."""
    if not VTEST.is_file():
        pytest.fail(f"{VTEST} missing: apt install opencv-doc")
    cap = cv2.VideoCapture(str(VTEST))
    images = []
    while len(images) < 100:
        ok, img = cap.read()
        assert ok
        images.append(img)
    cap.release()
    clip = write_clip(tmp_path_factory.mktemp("pets") / "pets.mp4", images, 7)
    truth = {r["frame"] - 1: r for r in _pets(data_dir) if r["frame"] <= 100}  # N-th decoded
    return clip, truth


def test_pipeline_masks_heads_of_tracked_people_and_sends_person_events(
    tmp_path: Path, pets_clip: tuple[Path, dict]
) -> None:
    clip, truth = pets_clip
    cfg = Config.model_validate(
        {
            "camera": {"name": "t", "loop": False, "realtime": False},
            "recording": {"enabled": False, "path": str(tmp_path / "rec")},
            "mask": {"shape": "box"},
        }
    )
    det = build_frame_detector(cfg.detect)
    src = FileSource(str(clip), loop=False, realtime=False)
    p = Pipeline(cfg, src, det, Masker(cfg.mask), fast=True)
    got = Listener()
    p.add_listener(got)
    p.start()
    assert p.wait(120), "pipeline did not finish"
    p.stop()
    assert len(got.frames) == 100 and p.frames_obscured == 0
    heads = total = 0
    heights: list[float] = []
    people_h: list[float] = []
    for i, regions in got.frames:
        if i not in truth:
            continue
        for person in truth[i]["people"]:
            if person["ignore"]:
                continue
            x, y, w, h = person["box"]
            cx, cy = x + w / 2, y + 0.08 * h  # the middle of the head
            total += 1
            heads += any(
                r.box[0] <= cx <= r.box[0] + r.box[2] and r.box[1] <= cy <= r.box[1] + r.box[3]
                for r in regions
            )
            people_h.append(h)
        heights += [r.box[3] for r in regions if r.label == "person"]
    assert total >= 50 and heads / total >= 0.85, (heads, total)
    # heads, not bodies (a body mask would be 1.35 x a person's height): tracked heads grow
    # between person passes, ~55 px here for ~18 px heads of ~81 px people
    assert np.median(heights) < 0.8 * np.median(people_h), (np.median(heights), np.median(people_h))
    person = [e for e in got.events if e["label"] == "person"]
    assert person[0]["type"] == "start" and person[-1]["type"] == "end"
    assert max(e["max_count"] for e in person) >= 3
    assert "person" in person[0]["id"]


@pytest.fixture
def broker(tmp_path: Path):
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


class Controls:
    privacy = False
    recording = True

    def set_privacy(self, on: bool) -> None:
        self.privacy = on

    def set_recording(self, on: bool) -> None:
        self.recording = on


def test_home_assistant_gets_person_car_dog_cat_sensors_counts_and_labelled_events(
    broker: Broker,
) -> None:
    from daemon.mqtt.config import MQTTConfig

    # every event in order: the rate limits have their own test (tests/test_mqtt_restart.py)
    cfg = MQTTConfig(host="127.0.0.1", port=broker.port, retry_initial_s=0.05, retry_max_s=0.5,
                     snapshot_interval_s=0, event_update_min_s=0,
                     event_snapshot_min_s=0)  # fmt: skip
    base = "veilcam/porch"
    bridge = MQTTBridge(cfg, "porch", Controls(), ("person", "car", "dog", "cat"))
    w = Watcher(broker, ("homeassistant/#", f"{base}/#")).start()
    bridge.start()
    try:
        wait_for(lambda: bridge.link and bridge.link.connected.is_set(), 10, "connected")
        w.wait(lambda ms: len([m for m in ms if m.topic.endswith("/config")]) >= 25, 10, "25")
        found = {m.topic: json.loads(m.payload) for m in w.msgs if m.topic.endswith("/config")}
        binary = {p["name"]: p for t, p in found.items() if "/binary_sensor/" in t}
        assert set(binary) == {"Person", "Face", "Car", "Dog", "Cat", "Board overloaded"}
        assert binary["Dog"]["state_topic"] == f"{base}/dog"
        sensors = {p["name"]: p for t, p in found.items() if "/sensor/" in t}
        for name in ("Person count", "Car count", "Dog count", "Cat count"):
            assert sensors[name]["state_topic"] == f"{base}/{name.split()[0].lower()}/count"
        images = {p["name"]: p for t, p in found.items() if "/image/" in t}
        assert set(images) == {f"{n} snapshot" for n in ("Person", "Car", "Dog", "Cat")}
        assert images["Person snapshot"]["image_topic"] == f"{base}/person/snapshot"
        assert images["Person snapshot"]["content_type"] == "image/jpeg"
        t0 = time.time()

        def ev(label: str, kind: str, n: int) -> dict[str, Any]:
            return {"type": kind, "id": f"porch-{label}-1", "label": label, "count": n,
                    "max_count": n, "track_ids": list(range(n)), "start": t0, "time": t0,
                    "end": None if kind != "end" else t0, "camera": "porch"}  # fmt: skip

        # a face alone does not turn "Person" on once people are detected
        bridge.on_event(ev("face", "start", 1))
        bridge.on_event(ev("person", "start", 1))
        bridge.on_event(ev("person", "update", 2))
        bridge.on_event(ev("dog", "start", 1))
        # the next (masked) frame is the snapshot of the person and dog events
        raw = Frame(np.full((90, 160, 3), 120, np.uint8), 1, 0.04, time.monotonic())
        bridge.on_frame(MASKER.mask(raw, []), 0)
        bridge.on_event(ev("person", "end", 0))
        got = [json.loads(m.payload) for m in w.wait_topic(f"{base}/events", n=5)]
        assert [(g["label"], g["event_type"]) for g in got] == [
            ("face", "start"), ("person", "start"), ("person", "update"), ("dog", "start"),
            ("person", "end"),
        ]  # fmt: skip

        def seq(topic: str) -> list[bytes]:
            return [m.payload for m in w.on(topic)]

        w.wait(lambda ms: seq(f"{base}/person")[-2:] == [b"ON", b"OFF"], 10, "person ON, OFF")
        w.wait(lambda ms: b"2" in seq(f"{base}/person/count"), 10, "person count 2")
        w.wait(lambda ms: seq(f"{base}/person/count")[-1] == b"0", 10, "person count back to 0")
        w.wait(lambda ms: seq(f"{base}/dog")[-1:] == [b"ON"], 10, "dog ON")
        assert seq(f"{base}/dog/count")[-1] == b"1"
        assert b"ON" not in seq(f"{base}/car")
        for label in ("person", "dog"):
            jpeg = w.wait_topic(f"{base}/{label}/snapshot")[0]
            assert jpeg.payload[:2] == b"\xff\xd8"  # a JPEG of the masked frame
        assert not w.on(f"{base}/car/snapshot")
    finally:
        w.stop()
        bridge.stop()


def test_people_seen_from_behind_turn_the_sensor_on_and_get_their_heads_masked(
    tmp_path: Path, data_dir: Path
) -> None:
    """veilcam run on intel_one-by-one-person-detection.mp4 against the hand counts in
    tests/data/intel_one_by_one_people.json (bench/people_clip.py prints the same figures)."""
    sys.path.insert(0, str(REPO / "bench"))
    import people_clip

    res = people_clip.score(people_clip.run_service(tmp_path))
    assert res["frames_with_people"] == 27 and res["heads"] == 26
    assert res["person_on_share"] >= 0.95, res
    assert res["heads_masked_share"] >= 0.95, res
    # a track is held for a while after a person leaves (rule 3), so an empty hand-counted frame
    # just after a departure may still carry it; how many depends on when the person pass ran
    # (0 on a quiet machine, 2 of 9 seen under load). More would be tracks on nobody.
    assert res["empty_frames_with_person_track"] <= 2, res


def test_eval_faces_with_people_keeps_the_face_ap_and_protects_every_dlib_face(
    data_dir: Path,
) -> None:
    def run(*extra: str) -> dict[str, Any]:
        r = subprocess.run(
            [sys.executable, "-m", "daemon", "eval", "faces", "--json", "--no-perturb",
             "--no-ssim", "--dataset", str(data_dir / "dlib_faces"), *extra],
            capture_output=True, text=True, cwd=REPO, timeout=600,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        return json.loads(r.stdout)

    faces, people = run(), run("--people")
    assert people["recall"]["all"] == 1.0
    assert people["ap"] == faces["ap"]  # person regions never enter the face AP
    assert people["masked_outside_faces"] >= faces["masked_outside_faces"]


class FacesAt:
    """Stands in for the face model: fixed candidates, so the veto rule can be checked."""

    def __init__(self, faces: list[Detection]) -> None:
        self.faces = faces

    def detect(self, image: np.ndarray, **kw: Any) -> list[Detection]:
        return list(self.faces)


def test_face_veto_drops_only_weak_faces_far_from_people_and_away_from_the_edge() -> None:
    near = Detection((110.0, 60.0, 12.0, 12.0), 0.1)  # on the person's head
    far = Detection((400.0, 300.0, 12.0, 12.0), 0.1)  # grass
    strong = Detection((500.0, 300.0, 12.0, 12.0), 0.6)
    edge = Detection((0.0, 200.0, 12.0, 12.0), 0.1)  # its body may be outside the picture
    people = FacesAt([Detection((100.0, 50.0, 40.0, 120.0), 0.5, "person")])
    det = FrameDetector(FacesAt([near, far, strong, edge]), people, every=1)  # type: ignore[arg-type]
    det.face_veto = 0.2
    got = det.detect(np.zeros((480, 640, 3), np.uint8))
    assert [d for d in got if d.label == "face"] == [near, strong, edge]
    det.face_veto = 0.0  # the default: every face is kept
    assert len([d for d in det.detect(np.zeros((480, 640, 3), np.uint8)) if d.label == "face"]) == 4
