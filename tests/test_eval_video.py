"""``veilcam eval video``: leaked face-frames, runs and false masks, as the command prints them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FACE = [300.0, 80.0, 60.0, 80.0]  # x, y, w, h of the one reference face
COVER = {"box": [290, 70, 80, 100], "label": "face", "shape": "box"}
ELSEWHERE = {"box": [0, 400, 64, 80], "label": "face", "shape": "box"}  # 5120 px, far away


def write_reference(path: Path, frames: int, width: int = 640, height: int = 480) -> None:
    head = {"clip": "x", "condition": "clean", "detector": "test", "frames": frames}
    rows = [{**head, "width": width, "height": height}]
    rows += [{"frame": t, "faces": [{"box": FACE, "score": 0.9, "id": 7}]} for t in range(frames)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def evaluate(clip: Path, ref: Path, *regions: Path) -> tuple[int, dict, str]:
    cmd = [sys.executable, "-m", "daemon", "eval", "video", str(clip), "--reference", str(ref)]
    for r in regions:
        cmd += ["--regions", str(r)]
    p = subprocess.run([*cmd, "--json"], cwd=REPO, capture_output=True, text=True, check=False)
    return p.returncode, (json.loads(p.stdout) if p.returncode == 0 else {}), p.stderr


@pytest.fixture
def clip(data_dir: Path) -> Path:
    return data_dir / "videos" / "intel_asl_gestures" / "again.mkv"  # 640x480


def test_leaks_runs_and_obscured_frames_are_counted(tmp_path: Path, clip: Path) -> None:
    ref = tmp_path / "ref.jsonl"
    write_reference(ref, 10)
    rows = []
    for t in range(10):
        if t in (2, 3, 4):  # three frames in a row with the mask elsewhere: a run of 3
            rows.append({"frame": t, "source": t, "regions": [ELSEWHERE]})
        elif t == 6:  # a single uncovered frame
            rows.append({"frame": t, "source": t, "regions": []})
        elif t == 8:  # obscured: nothing of the face shows
            rows.append({"frame": t, "source": t, "regions": [], "obscured": True})
        elif t != 9:  # frame 9 was never recorded
            rows.append({"frame": t, "source": t, "regions": [COVER]})
    regions = tmp_path / "r.jsonl"
    regions.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    rc, out, err = evaluate(clip, ref, regions)
    assert rc == 0, err
    r = out["results"][str(regions)]
    assert (r["face_frames"], r["leaked"], r["longest_run"]) == (9, 4, 3)
    assert r["frames_with_leak"] == 4
    assert r["frames_obscured"] == 1 and r["frames_recorded"] == 9
    assert r["face_frames_not_recorded"] == 1
    assert r["by_height"][">=64"]["leaked"] == 4
    # frames 2-4 mask 64x80 px away from the face: the only masks outside it
    outside = r["masked_outside_faces_mean"]
    expected = (3 * 64 * 80 / (640 * 480) + 1.0) / 9  # + the obscured frame, all masked
    assert outside == pytest.approx(expected, rel=0.01)


def test_a_partly_covered_face_is_a_leak(tmp_path: Path, clip: Path) -> None:
    ref = tmp_path / "ref.jsonl"
    write_reference(ref, 1)
    half = {"box": [300, 80, 30, 80], "label": "face", "shape": "box"}  # half the face's box
    regions = tmp_path / "r.jsonl"
    regions.write_text(json.dumps({"frame": 0, "regions": [half]}) + "\n")
    rc, out, err = evaluate(clip, ref, regions)
    assert rc == 0, err
    assert out["results"][str(regions)]["leaked"] == 1


def test_a_reference_for_another_clip_is_refused(tmp_path: Path, clip: Path) -> None:
    ref = tmp_path / "ref.jsonl"
    write_reference(ref, 3, width=1920, height=1080)
    regions = tmp_path / "r.jsonl"
    regions.write_text(json.dumps({"frame": 0, "regions": []}) + "\n")
    rc, _, err = evaluate(clip, ref, regions)
    assert rc == 1
    assert "1920x1080" in err and "640x480" in err


def test_the_service_and_mask_are_scored_on_the_real_clip(tmp_path: Path, clip: Path) -> None:
    """Runs ``veilcam run --fast`` and ``veilcam mask`` on the clip itself: the signer's face,
    put in the reference for every frame, is covered in every recorded frame."""
    ref = tmp_path / "ref.jsonl"
    write_reference(ref, 77)
    cmd = [sys.executable, "-m", "daemon", "eval", "video", str(clip), "--reference", str(ref)]
    cmd += ["--mode", "fast", "--mode", "mask", "--json"]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False, timeout=300)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)["results"]
    assert set(res) == {"fast", "mask"}
    for r in res.values():
        assert r["frames_recorded"] == 77
        assert r["face_frames"] == 77
        assert r["leaked"] == 0
