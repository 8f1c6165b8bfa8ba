"""Issue 11.9: ``veilcam mask`` on a stream whose resolution changes mid-stream.

It used to report the file "masked without problems" while the output kept the first size and
held only the top-left quarter of the larger frames. Now the rest goes to a new file at the new
size, and stderr says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import cv2

REPO = Path(__file__).resolve().parent.parent


def ts_part(path: Path, frames: list, size: tuple[int, int]) -> None:
    with av.open(str(path), "w", format="mpegts") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height = size
        s.pix_fmt = "yuv420p"
        for img in frames:
            vf = av.VideoFrame.from_ndarray(cv2.resize(img, size), format="bgr24")
            for pkt in s.encode(vf):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def test_a_resolution_change_starts_a_new_output(tmp_path: Path, data_dir: Path) -> None:
    clip = data_dir / "videos" / "intel_asl_gestures" / "again.mkv"
    with av.open(str(clip)) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)][:30]
    a, b = tmp_path / "a.ts", tmp_path / "b.ts"
    ts_part(a, frames[:15], (960, 540))
    ts_part(b, frames[15:], (1920, 1080))
    src = tmp_path / "stream.ts"
    src.write_bytes(a.read_bytes() + b.read_bytes())  # one stream, two resolutions
    out = tmp_path / "out"
    regions = tmp_path / "r.jsonl"
    p = subprocess.run(
        [sys.executable, "-m", "daemon", "mask", str(src), "--output", str(out), "-q",
         "--regions", str(regions)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "resolution changed from 960x540 to 1920x1080" in p.stderr
    sizes = {}
    for f in sorted(out.glob("*.mp4")):
        with av.open(str(f)) as c:
            got = [fr.to_ndarray(format="bgr24").shape[:2] for fr in c.decode(video=0)]
        sizes[f.name] = (set(got), len(got))
    # the signer's face is in every frame: masked in every frame, on both sides of the change
    lines = [json.loads(x) for x in regions.read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(30))
    assert all(any(g["label"] == "face" for g in r["regions"]) for r in lines)
    big = [g["box"] for g in lines[15]["regions"] if g["label"] == "face"]
    assert any(b[2] > 150 for b in big)  # boxes at the new, doubled scale
    assert sizes == {
        "stream.mp4": ({(540, 960)}, 15),
        "stream_part2.mp4": ({(1080, 1920)}, 15),
    }
