"""``veilcam mask``: folders, relative paths, regions JSON Lines, videos, bad input, fail closed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from daemon.cli import main
from daemon.evaluate.coverage import protected, region_mask
from daemon.regions import Region


def _faces(data_dir: Path) -> list[dict]:
    lines = (data_dir / "dlib_faces" / "annotations.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines]


@pytest.fixture()
def tree(tmp_path: Path, data_dir: Path) -> Path:
    """in/a.jpg, in/sub/deeper/b.png, in/broken.jpg, in/notes.txt"""
    anns = _faces(data_dir)
    src = tmp_path / "in"
    (src / "sub" / "deeper").mkdir(parents=True)
    shutil.copy(data_dir / "dlib_faces" / "images" / anns[0]["image"], src / "a.jpg")
    img = cv2.imread(str(data_dir / "dlib_faces" / "images" / anns[1]["image"]))
    cv2.imwrite(str(src / "sub" / "deeper" / "b.png"), img)
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (src / "notes.txt").write_text("not an image")
    return tmp_path


def _regions(line: dict) -> list[Region]:
    out = []
    for r in line["regions"]:
        out.append(Region(tuple(r["box"]), r["label"], r["shape"]))  # type: ignore[arg-type]
    return out


def test_folder_is_walked_masked_and_described(tree: Path, data_dir: Path, capsys) -> None:
    anns = _faces(data_dir)
    out = tree / "out"
    code = main(
        ["mask", str(tree / "in"), "--output", str(out), "--regions", str(tree / "r.jsonl")]
    )
    err = capsys.readouterr().err
    assert code == 1  # broken.jpg
    assert "broken.jpg" in err and "cannot read image" in err
    assert (out / "a.jpg").is_file() and (out / "sub" / "deeper" / "b.png").is_file()
    assert not (out / "broken.jpg").exists() and not (out / "notes.txt").exists()
    lines = [json.loads(x) for x in (tree / "r.jsonl").read_text().splitlines()]
    by_name = {x["image"]: x for x in lines}
    assert set(by_name) == {"a.jpg", "sub/deeper/b.png"}
    for name, ann in (("a.jpg", anns[0]), ("sub/deeper/b.png", anns[1])):
        line = by_name[name]
        assert (line["width"], line["height"]) == (ann["width"], ann["height"])
        r0 = line["regions"][0]
        assert set(r0) >= {"box", "det", "score", "label", "shape"}
        assert r0["label"] == "face" and r0["shape"] == "ellipse"
        mask = region_mask(_regions(line), line["width"], line["height"])
        assert all(protected(mask, [f["box"] for f in ann["faces"]]))
    # the written picture is masked where the regions say, untouched far from them
    src = cv2.imread(str(tree / "in" / "a.jpg")).astype(int)
    got = cv2.imread(str(out / "a.jpg")).astype(int)
    mask = region_mask(_regions(by_name["a.jpg"]), src.shape[1], src.shape[0])
    assert np.abs(got - src)[mask].mean() > 8
    assert np.abs(got - src)[~mask].mean() < 4  # JPEG re-encoding only


def test_detection_failure_writes_a_fully_obscured_image(
    tree: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from daemon.detect import Detector, DetectorError

    def broken(self, image, *, stream=False, still=False):
        raise DetectorError("interpreter failed")

    monkeypatch.setattr(Detector, "detect", broken)
    out = tree / "out"
    assert main(["mask", str(tree / "in" / "a.jpg"), "--output", str(out)]) == 1
    assert "a.jpg" in capsys.readouterr().err
    assert cv2.imread(str(out / "a.jpg")).max() <= 3  # black, up to JPEG noise


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="bgr24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def test_videos_become_masked_h264_with_per_frame_regions(tmp_path: Path, data_dir: Path) -> None:
    ann = _faces(data_dir)[0]
    img = cv2.imread(str(data_dir / "dlib_faces" / "images" / ann["image"]))
    img = img[: img.shape[0] // 2 * 2, : img.shape[1] // 2 * 2]
    frames = [np.roll(img, 2 * i, axis=1) for i in range(12)]
    (tmp_path / "in").mkdir()
    _write_video(tmp_path / "in" / "one.mkv", frames)
    _write_video(tmp_path / "in" / "two.mp4", frames[:5])
    out = tmp_path / "out"
    regions = tmp_path / "r.jsonl"
    assert main(["mask", str(tmp_path / "in"), "-o", str(out), "--regions", str(regions)]) == 0
    # several videos: each one's lines beside its output
    lines = [
        json.loads(x) for x in Path(f"{out / 'one.mp4'}.regions.jsonl").read_text().split("\n") if x
    ]
    assert [x["frame"] for x in lines] == list(range(12))
    with av.open(str(out / "one.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        decoded = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert len(decoded) == 12
    for i, (line, got) in enumerate(zip(lines, decoded, strict=True)):
        boxes = [[f["box"][0] + 2 * i, *f["box"][1:]] for f in ann["faces"]]
        mask = region_mask(_regions(line), got.shape[1], got.shape[0])
        assert all(protected(mask, boxes)), f"frame {i}"
        diff = np.abs(got.astype(int) - frames[i].astype(int))
        assert diff[mask].mean() > 8
    assert Path(f"{out / 'two.mp4'}.regions.jsonl").is_file()


def test_corrupt_video_is_named_and_the_rest_still_processed(
    tmp_path: Path, data_dir: Path, capsys
) -> None:
    ann = _faces(data_dir)[0]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 500)
    shutil.copy(data_dir / "dlib_faces" / "images" / ann["image"], tmp_path / "in" / "ok.jpg")
    code = main(["mask", str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    assert code == 1
    assert "bad.mp4" in capsys.readouterr().err
    assert (tmp_path / "out" / "ok.jpg").is_file()


def test_output_may_not_overwrite_the_input(tree: Path) -> None:
    assert main(["mask", str(tree / "in"), "--output", str(tree / "in")]) == 2


def test_single_video_regions_go_to_the_file_with_zones(tmp_path: Path, data_dir: Path) -> None:
    ann = _faces(data_dir)[0]
    img = cv2.imread(str(data_dir / "dlib_faces" / "images" / ann["image"]))
    img = img[: img.shape[0] // 2 * 2, : img.shape[1] // 2 * 2]
    _write_video(tmp_path / "clip.mkv", [img] * 3)
    regions = tmp_path / "r.jsonl"
    zone = "mask.zones=[{name: corner, points: [[0, 0], [60, 0], [0, 60]]}]"
    args = ["mask", str(tmp_path / "clip.mkv"), "-o", str(tmp_path / "out"), "--set", zone]
    assert main([*args, "--regions", str(regions)]) == 0
    lines = [json.loads(x) for x in regions.read_text().splitlines()]
    assert [x["frame"] for x in lines] == [0, 1, 2]
    zones = [r for r in lines[0]["regions"] if r["label"] == "zone"]
    assert zones == [
        {"box": [0, 0, 60, 60], "label": "zone", "shape": "polygon",
         "points": [[0, 0], [60, 0], [0, 60]]}
    ]  # fmt: skip
    with av.open(str(tmp_path / "out" / "clip.mp4")) as c:
        first = next(iter(c.decode(video=0))).to_ndarray(format="bgr24")
    assert first[2:20, 2:20].max() < 12  # zone filled black (up to H.264 noise)
