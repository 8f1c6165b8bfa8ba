"""Escrow: sealed bytes beside the video, and how well a reveal restores the faces.

    .venv/bin/python bench/escrow_storage.py [--seconds 20] [--crf 18 --crf 20 ...]
        [--preset ultrafast --preset superfast ...] [--scene "1 person 720p" ...]

For each scene at 720p and 1080p (copies made with ffmpeg in a temp dir, from
../shared/data/videos), runs ``veilcam run --fast`` with escrow on (a throw-away key pair), then
``veilcam reveal`` on every segment, and prints:

* video and sealed MB per hour at the clip's own frame rate, and sealed as a share of video;
* region PSNR of the revealed faces against the source frame (median and 5th percentile), over
  every face region the run recorded (``--regions``).

Scenes: "1 person" is intel_one-by-one-person-detection (people cross a room one at a time,
10 fps); "5 faces" is five intel_asl_gestures signers side by side (a 3x2 grid, one tile
black, 30 fps); "crowd" is the facenet-pytorch clip (1080p, 25 fps, ~20 faces).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from daemon.media.decode import bgr  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "videos"
VEILCAM = [sys.executable, "-m", "daemon"]
PASS = "bench-only passphrase"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def make_scenes(tmp: Path, seconds: float) -> list[tuple[str, Path]]:
    enc = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-an", "-t", str(seconds)]
    out = []
    signers = [
        DATA / "intel_asl_gestures" / f"{n}.mkv" for n in ("again", "eat", "milk", "no", "please")
    ]
    for res, (w, h) in (("720p", (1280, 720)), ("1080p", (1920, 1080))):
        one = tmp / f"one_{res}.mp4"
        ffmpeg(
            "-i",
            str(DATA / "intel_one-by-one-person-detection.mp4"),
            "-vf",
            f"scale={w}:{h}",
            *enc,
            str(one),
        )
        out.append((f"1 person {res}", one))
        five = tmp / f"five_{res}.mp4"
        inputs = [a for s in signers for a in ("-stream_loop", "-1", "-i", str(s))]
        grid = (
            "".join(f"[{i}:v]scale=640:480,setsar=1[v{i}];" for i in range(5))
            + "color=black:s=640x480:r=30[blank];"
            + "[v0][v1][v2][v3][v4][blank]xstack=inputs=6:"
            + "layout=0_0|w0_0|w0+w1_0|0_h0|w0_h0|w0+w1_h0,"
            + f"scale={w}:{h},fps=30[out]"
        )
        ffmpeg(*inputs, "-filter_complex", grid, "-map", "[out]", *enc, str(five))
        out.append((f"5 faces {res}", five))
        crowd = tmp / f"crowd_{res}.mp4"
        ffmpeg(
            "-i", str(DATA / "facenet-pytorch_video.mp4"), "-vf", f"scale={w}:{h}", *enc, str(crowd)
        )
        out.append((f"crowd {res}", crowd))
    return out


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VEILCAM_PASSPHRASE": PASS}
    r = subprocess.run([*VEILCAM, *args], cwd=REPO, env=env, capture_output=True, text=True)
    if r.returncode not in (0, 1):
        raise SystemExit(f"veilcam {args[0]} failed:\n{r.stderr[-3000:]}")
    return r


def frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [bgr(f) for f in c.decode(video=0)]  # as the daemon converts them


def scene(
    name: str, clip: Path, work: Path, keys: Path, crf: int | None, preset: str | None
) -> dict:
    rec = work / "rec"
    cfg = work / "c.yaml"
    cfg.write_text(
        f"camera:\n  name: bench\nrecording:\n  path: {rec}\n  min_free_percent: 0\n"
        f"mqtt:\n  enabled: false\nescrow:\n  enabled: true\n"
        f"  public_key_file: {keys / 'escrow.pub'}\n"
        + (f"  crf: {crf}\n" if crf is not None else "")
        + (f"  preset: {preset}\n" if preset is not None else "")
    )
    regions = work / "regions.jsonl"
    run("run", "--config", str(cfg), "--source", str(clip), "--fast", "--regions", str(regions))
    with av.open(str(clip)) as c:
        fps = float(c.streams.video[0].average_rate)
    segs = sorted(rec.rglob("*.mp4"))
    video = sum(s.stat().st_size for s in segs)
    sealed = sum(Path(f"{s}.sealed").stat().st_size for s in segs)
    src = frames(clip)
    lines = [json.loads(x) for x in regions.read_text().splitlines()]
    psnrs: list[float] = []
    problems = 0
    first = 0
    for s in segs:
        out = work / f"clear_{s.stem}.mp4"
        r = run("reveal", str(s), "--key", str(keys / "escrow.key"), "--output", str(out))
        problems += r.stderr.count("reveal: ")
        clear = frames(out)
        for i, img in enumerate(clear):
            line = lines[first + i]
            for g in line["regions"]:
                if g["label"] != "face":
                    continue
                x, y, w, h = g["box"]
                ref = src[line["source"]][y : y + h, x : x + w]
                psnrs.append(float(cv2.PSNR(img[y : y + h, x : x + w], ref)))
        first += len(clear)
    n = len(lines)
    per_hour = 3600 * fps / max(1, n)
    return {
        "scene": name,
        "frames": n,
        "fps": fps,
        "faces_per_frame": sum(1 for x in lines for g in x["regions"] if g["label"] == "face")
        / max(1, n),
        "video_mb_h": video * per_hour / 1e6,
        "sealed_mb_h": sealed * per_hour / 1e6,
        "share": sealed / max(1, video),
        "psnr_median": statistics.median(psnrs) if psnrs else float("nan"),
        "psnr_p5": float(np.percentile(psnrs, 5)) if psnrs else float("nan"),
        "reveal_problems": problems,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each scene")
    ap.add_argument("--crf", type=int, action="append", help="escrow.crf values (default: config)")
    ap.add_argument(
        "--preset", action="append", help="escrow.preset values (default: config), each in turn"
    )
    ap.add_argument("--scene", action="append", help="only these scenes, e.g. '1 person 720p'")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        keys = tmp / "owner"
        r = subprocess.run(
            [*VEILCAM, "keygen", "--out", str(keys), "--kdf", "interactive"],
            cwd=REPO,
            env={**os.environ, "VEILCAM_PASSPHRASE": PASS},
            capture_output=True,
            text=True,
            check=True,
        )
        del r
        print(
            f"{'scene':32} {'frames':>6} {'faces/fr':>8} {'video MB/h':>10} {'sealed MB/h':>11} "
            f"{'sealed/video':>12} {'PSNR med':>8} {'p5':>5}"
        )
        for name, clip in make_scenes(tmp, args.seconds):
            if args.scene and name not in args.scene:
                continue
            for crf, preset in itertools.product(args.crf or [None], args.preset or [None]):
                work = tmp / f"{name.replace(' ', '_')}_{crf}_{preset}"
                work.mkdir()
                row = scene(name, clip, work, keys, crf, preset)
                label = name + (f" crf {crf}" if crf is not None else "")
                label += f" {preset}" if preset is not None else ""
                print(
                    f"{label:32} {row['frames']:6d} {row['faces_per_frame']:8.1f} "
                    f"{row['video_mb_h']:10.0f} {row['sealed_mb_h']:11.0f} "
                    f"{100 * row['share']:11.0f}% "
                    f"{row['psnr_median']:8.1f} {row['psnr_p5']:5.1f}"
                    + (
                        f"  ({row['reveal_problems']} reveal problems)"
                        if row["reveal_problems"]
                        else ""
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
