"""Benchmark the live pipeline from a file source, against a plain decode + encode.

    .venv/bin/python bench/pipeline.py [--repeat 3] [--clip FILE ...]

Default clips: ../shared/data/videos/facenet-pytorch_video.mp4 (1080p) looped 3x, and the same
clip scaled to 720p with ffmpeg (into a temp dir). Each run is a fresh child process, so peak
RSS and CPU are that run's own (``os.wait4``). CPU share covers the whole run, model load
included.

Printed per clip, medians over the repeats:
* pipeline --fast: frames/s, CPU share of the machine (100 % = every core busy), peak RSS,
  detector runs per frame, capture->written latency (median);
* pipeline at the clip's own frame rate (real-time pace): capture->written latency and whether
  every frame made it unobscured, which is the latency a live camera sees;
* plain: the same decode + H.264 encode with no detection and no masking, for the ratio.
* ``--escrow``: CPU-ms/frame with escrow on and off (children alternate), and the sealed
  bytes beside the video's; ``--preset P`` (repeatable) runs it for each escrow.preset.
* CPU-ms/frame: process CPU time (all threads) per written frame, first to last frame. It
  depends less on other jobs than fps does: on an idle machine fps <= 1000 * cores / it.
Default privacy settings (config.yaml defaults) throughout. The load average is printed
before and after: on a shared machine the fps figures mean little without it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "videos"


def child_pipeline(
    clip: str,
    out: str,
    fast: bool,
    people: bool = True,
    escrow: bool = False,
    preset: str | None = None,
) -> dict:
    """Runs in the child: the real Service on ``clip``; returns its figures."""
    from daemon import logs
    from daemon.config import Config
    from daemon.service.daemon import Service

    logs.setup("warning")
    section: dict = {"enabled": False}
    if escrow:  # a throw-away owner key: only its public half is needed to seal
        from nacl.public import PrivateKey

        from daemon.escrow.keys import public_text

        pub = Path(out) / "escrow.pub"
        pub.write_text(public_text(PrivateKey.generate().public_key))
        section = {"enabled": True, "public_key_file": str(pub)}
        if preset:
            section["preset"] = preset
    cfg = Config.model_validate(
        {
            "camera": {"name": "bench", "loop": False, "realtime": not fast},
            "recording": {"path": out, "min_free_percent": 0},
            "mqtt": {"enabled": False},
            "detect": {"people": {"enabled": people}},
            "escrow": section,
        }
    )
    times: list[float] = []
    cpu: list[float] = []
    latencies: list[float] = []

    def on_written(frame, n: int) -> None:
        now = time.monotonic()
        times.append(now)
        cpu.append(time.process_time())
        latencies.append((now - frame.captured) * 1000)

    svc = Service(cfg, source=clip, fast=fast, on_written=on_written)
    code = svc.run()
    s = svc.pipeline.stats()
    n = len(times)
    rec = Path(out) / "bench"
    video = sum(f.stat().st_size for f in rec.rglob("*.mp4"))
    sealed = sum(f.stat().st_size for f in rec.rglob("*.sealed"))
    span = times[-1] - times[0] if n > 1 else float("nan")
    return {
        "code": code,
        "frames": n,
        "fps": (n - 1) / span if n > 1 else 0.0,
        "cpu_ms_per_frame": 1000 * (cpu[-1] - cpu[0]) / (n - 1) if n > 1 else float("nan"),
        "latency_ms": statistics.median(latencies) if latencies else float("nan"),
        "latency_p95_ms": sorted(latencies)[int(0.95 * (n - 1))] if latencies else float("nan"),
        "obscured": s["frames_obscured"],
        "dropped": s["frames_dropped"],
        "detector_runs": svc.pipeline.detector_runs,
        "detector_ms": s["detector_ms"],
        "video_bytes": video,
        "sealed_bytes": sealed,
    }


def child_plain(clip: str, out: str) -> dict:
    """Decode + encode with no detection (frames pass the masker with no regions)."""
    from daemon.frames import Frame
    from daemon.mask.masker import Masker
    from daemon.media.decode import VideoReader
    from daemon.media.encode import H264Writer

    masker = Masker()
    t0 = time.monotonic()
    c0 = time.process_time()
    n = 0
    with VideoReader(clip) as r:
        w, h = r.size
        with H264Writer(Path(out) / "plain.mp4", w, h, r.fps) as wr:
            for df in r.frames():
                wr.write(masker.mask(Frame(df.image, df.index, df.pts, time.monotonic()), []))
                n += 1
    return {
        "code": 0,
        "frames": n,
        "fps": n / (time.monotonic() - t0),
        "cpu_ms_per_frame": 1000 * (time.process_time() - c0) / max(1, n),
    }


def run_child(kind: str, clip: Path) -> dict:
    """One fresh child process; its own CPU time and peak RSS come from ``os.wait4``."""
    with (
        tempfile.TemporaryDirectory() as out,
        tempfile.TemporaryFile("w+") as so,
        tempfile.TemporaryFile("w+") as se,
    ):
        t0 = time.monotonic()
        p = subprocess.Popen(
            [sys.executable, __file__, "--child", kind, str(clip), out], stdout=so, stderr=se
        )  # kind "fast-nopeople": --fast with detect.people off
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        so.seek(0)
        se.seek(0)
        stdout, stderr = so.read(), se.read()
    if p.returncode != 0:
        raise SystemExit(f"{kind} on {clip} failed:\n{stderr}")
    res = json.loads(stdout.strip().splitlines()[-1])
    res["cpu_share"] = 100.0 * (ru.ru_utime + ru.ru_stime) / wall / (os.cpu_count() or 1)
    res["peak_rss_mb"] = ru.ru_maxrss / 1024
    return res


def make_clips(tmp: Path) -> list[tuple[str, Path]]:
    src = DATA / "facenet-pytorch_video.mp4"
    c1080 = tmp / "facenet_1080p_x3.mp4"
    c720 = tmp / "facenet_720p_x3.mp4"
    common = ["ffmpeg", "-v", "error", "-y", "-stream_loop", "2", "-i", str(src)]
    enc = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-an"]
    subprocess.run([*common, *enc, str(c1080)], check=True)
    subprocess.run([*common, "-vf", "scale=1280:720", *enc, str(c720)], check=True)
    return [("720p", c720), ("1080p", c1080)]


def on_off(on_kind: str, off_kind: str, clip: Path, repeat: int) -> tuple[list[dict], list[dict]]:
    """Runs of two kinds, alternating, so that load changes hit both alike."""
    on: list[dict] = []
    off: list[dict] = []
    for _ in range(repeat):
        off.append(run_child(off_kind, clip))
        on.append(run_child(on_kind, clip))
    return on, off


def median(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else float("nan")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.path.insert(0, str(REPO))  # this checkout, even when another one is installed
        kind, clip, out = sys.argv[2:5]
        people = "-nopeople" not in kind
        escrow = "-escrow" in kind
        preset = kind.split(":")[1] if ":" in kind else None  # "fast-escrow:superfast"
        kind = kind.split("-")[0]
        res = (
            child_plain(clip, out)
            if kind == "plain"
            else child_pipeline(clip, out, kind == "fast", people, escrow, preset)
        )
        print(json.dumps(res))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clip", action="append", type=Path, help="instead of the default clips")
    ap.add_argument(
        "--people",
        action="store_true",
        help="only compare CPU-ms/frame (--fast) with detect.people on and off, alternating",
    )
    ap.add_argument(
        "--escrow",
        action="store_true",
        help="only compare CPU-ms/frame (--fast) with escrow on and off, alternating",
    )
    ap.add_argument(
        "--preset",
        action="append",
        help="with --escrow: escrow.preset values (default: config), each against escrow off",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clips = [(c.name, c) for c in args.clip] if args.clip else make_clips(Path(tmp))
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
        print(f"cpus={os.cpu_count()} repeat={args.repeat} (medians); load average {load}")
        for name, clip in clips:
            if args.people:
                on, off = on_off("fast", "fast-nopeople", clip, args.repeat)
                a, b = median(on, "cpu_ms_per_frame"), median(off, "cpu_ms_per_frame")
                print(
                    f"{name}: people on {a:.1f} CPU-ms/frame (detector "
                    f"{median(on, 'detector_ms'):.0f} ms/run), off {b:.1f} "
                    f"(detector {median(off, 'detector_ms'):.0f} ms/run) -> on/off = {a / b:.2f}"
                )
                continue
            for preset in (args.preset or [None]) if args.escrow else []:
                kind = "fast-escrow" + (f":{preset}" if preset else "")
                on, off = on_off(kind, "fast", clip, args.repeat)
                a, b = median(on, "cpu_ms_per_frame"), median(off, "cpu_ms_per_frame")
                v, sb = median(on, "video_bytes"), median(on, "sealed_bytes")
                print(
                    f"{name}{f' {preset}' if preset else ''}: escrow on {a:.1f} CPU-ms/frame, "
                    f"off {b:.1f} -> on/off = "
                    f"{a / b:.3f}; sealed {sb / 1e6:.1f} MB beside {v / 1e6:.1f} MB of video "
                    f"({100 * sb / v:.0f} %) for {median(on, 'frames'):.0f} frames"
                )
            if args.escrow:
                continue
            fast = [run_child("fast", clip) for _ in range(args.repeat)]
            plain = [run_child("plain", clip) for _ in range(args.repeat)]
            live = run_child("live", clip)
            fps, pfps = median(fast, "fps"), median(plain, "fps")
            print(
                f"{name}: pipeline {fps:.1f} fps, CPU {median(fast, 'cpu_share'):.0f}%, "
                f"peak RSS {median(fast, 'peak_rss_mb'):.0f} MB, "
                f"{median(fast, 'cpu_ms_per_frame'):.0f} CPU-ms/frame, "
                f"detector {median(fast, 'detector_ms'):.0f} ms/run on "
                f"{median(fast, 'detector_runs') / max(1, median(fast, 'frames')):.2f} of frames, "
                f"latency (fast, queued) {median(fast, 'latency_ms'):.0f} ms, "
                f"obscured {median(fast, 'obscured'):.0f}/{median(fast, 'frames'):.0f}"
            )
            print(
                f"{name}: real-time pace: capture->written latency median "
                f"{live['latency_ms']:.0f} ms, p95 {live['latency_p95_ms']:.0f} ms, "
                f"obscured {live['obscured']}, dropped {live['dropped']} of {live['frames']}, "
                f"detector on {live['detector_runs'] / max(1, live['frames']):.2f} of frames"
            )
            print(
                f"{name}: plain decode+encode {pfps:.1f} fps, CPU "
                f"{median(plain, 'cpu_share'):.0f}%, {median(plain, 'cpu_ms_per_frame'):.0f} "
                f"CPU-ms/frame  -> pipeline/plain = {fps / pfps:.2f}"
            )
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
        print(f"load average at the end {load}")


if __name__ == "__main__":
    main()
