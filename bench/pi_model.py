#!/usr/bin/env python3
"""Project veilcam's per-frame cost on a Raspberry Pi 5 / Pi 4 from exact instruction counts.

    scripts/aarch64-emu.sh                          # once: qemu-user, plugin, arm64 root, wheels
    .venv/bin/python bench/pi_model.py [--cpus a76,a72] [--res 720,1080] [--jobs 2] [--json F]
    .venv/bin/python bench/pi_model.py --clip intel_one-by-one-person-detection.mp4 --span 23,43
    .venv/bin/python bench/pi_model.py --validate   # the same counts on x86, vs native CPU-ms
    .venv/bin/python bench/pi_model.py --ci         # detector instructions/run vs pi_baseline.json

Why: there is no Pi here, but its instruction stream can be counted. Each stage of a frame's way
runs on the project's real code (``daemon`` from this checkout) and the real aarch64 wheels
under ``qemu-aarch64 -cpu cortex-a76`` (Pi 5) or ``-cpu cortex-a72`` (Pi 4) with QEMU's
instruction-count plugin. Every stage runs in its own process twice, with R = 1 and R = 2 rounds
of N items after a warm-up; (count(2) - count(1)) / N is that stage's instructions per item, so
interpreter start, imports and set-up cancel exactly.

Stages, as the service runs them (config.yaml defaults):
* decode: ``VideoReader.frames(yuv=True)`` (PyAV, the capture source's call): packets to planes;
* colour: ``Frame.image`` (OpenCV I420 -> BGR), the detector's input, once per detector run;
* faces: ``detect_frame`` on a ``build_frame_detector`` FrameDetector, per detector run: whole
  frame plus the 1.0x tiles its candidates open (tile gate), on 4 frames spread over the clip.
  One interpreter thread, so no thread-pool spinning is counted (the 4-core figure applies a
  parallel efficiency instead);
* people: one ``PeopleDetector.detect`` pass (whole frame + 2x2 tiles), which the service runs
  on every 4th detector run (``detect.people.every``);
* track+mask: ``Tracker.update/boxes_at/prune`` and ``Masker.regions/mask`` (its own I420 ->
  BGR copy included) on consecutive frames with the detections x86 found on them;
* encode: ``H264Writer.write`` (BGR -> I420 and libx264 ultrafast/zerolatency, the Pi 5's only
  encoder; the Pi 4's hardware encoder would take most of this stage off the CPU).
Clip: the facenet clip (a crowd of ~60 faces, the tile gate's heavy case) unless ``--clip``
names another file under the data set's videos/ (a typical scene: one person at a time). It is
cut to ``--span`` (seconds, optional) and scaled with ffmpeg to the size counted (720: 1280x720,
1080: 1920x1080; the facenet clip at 1080 is used as it is), so decode, colour, track+mask and
encode run on the span's first frames and faces and people on 4 frames spread over it.
The projection gives the detector on every frame (the most it can cost) and on every 5th (the
cadence the service settled at at real-time pace on the 1080p clip on x86, README "Benchmark").

Counts become CPU-ms with ms = instructions / (IPC * clock). Clocks: Pi 5 2.4 GHz (cortex-a76),
Pi 4 1.8 GHz (cortex-a72, firmware since 2020; 1.5 GHz on early boards). IPC: 2.0 (a76) and
1.5 (a72) are stated assumptions, NOT calibrations: no published Pi 4 / Pi 5 figure of a
workload counted here was found. The nearest published one, XNNPACK's README table "Raspberry
Pi" (https://github.com/google/XNNPACK, FP32 MobileNet v2 1.0x: 44 ms on a Pi 4, 4 threads,
end2end-bench, Feb 2020), is FP32, a model not run here, and has no Pi 5 column. Fps on 4 cores
= 1000 * 4 * EFFICIENCY / total CPU-ms per frame; fps scale with the IPC assumed.

Validation (``--validate``): the same stages counted under ``qemu-x86_64`` (TCG offers up to
AVX2, not the AVX-512 VNNI the host's native XNNPACK uses), IPC calibrated on one detector run
timed natively, projected CPU-ms/frame compared with what bench/pipeline.py measures natively.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# ../shared/data beside the checkout (a worktree one level deeper looks one level up too)
DATA = Path(
    os.environ.get("VEILCAM_DATA")
    or next(
        (
            str(p)
            for p in (REPO.parent / "shared/data", REPO.parent.parent / "shared/data")
            if p.exists()
        ),
        str(REPO.parent / "shared/data"),
    )
)
VIDEOS = DATA / "videos"
CLIP = VIDEOS / "facenet-pytorch_video.mp4"
SIZES = {"720": (1280, 720), "1080": (1920, 1080)}
BASELINE = REPO / "bench" / "pi_baseline.json"
CACHE = Path(os.environ.get("VEILCAM_EMU_CACHE", "/var/cache/veilcam-emu"))

CPUS = {"a76": "cortex-a76", "a72": "cortex-a72"}
BOARD = {"a76": ("Pi 5", 2.4), "a72": ("Pi 4", 1.8)}  # name, GHz
# Instructions per cycle, one per core: assumptions, not calibrations (module docstring; README
# "On a Raspberry Pi (projected)"). cortex-a76 is 4-wide out of order, the a72 3-wide.
IPC = {"a76": 2.0, "a72": 1.5}
EFFICIENCY = 0.8  # share of 4 cores' time the pipeline's threads turn into work
CAMERA_FPS = 25.0
STAGES = ["decode", "colour", "faces", "people", "track+mask", "encode"]
WARM = {"decode": 3, "colour": 2, "faces": 1, "people": 1, "track+mask": 3, "encode": 3, "model": 2}
ITEMS = {
    "decode": 8,
    "colour": 4,
    "faces": 2,
    "people": 1,
    "track+mask": 8,
    "encode": 8,
    "model": 2,
}
CI_TOLERANCE = 0.10
PER_RUN = ("colour", "faces", "people")  # once per detector run (people: per pass / PEOPLE_EVERY)
PEOPLE_EVERY = 4  # detect.people.every (config.yaml default)
CADENCES = (1, 5)  # detector on every frame; on every 5th (the 1080p real-time pace on x86)


# --------------------------------------------------------------------------------------------
# child side: runs under the emulator (or natively for preparation)
# --------------------------------------------------------------------------------------------


def _cfg(threads: int = 1, people: bool = True) -> Any:
    """config.yaml's defaults, but ``threads`` interpreter threads (1: nothing spins)."""
    from daemon.config import Config

    return Config.model_validate(
        {
            "mqtt": {"enabled": False},
            "detect": {"threads": threads, "people": {"enabled": people}},
            "recording": {"path": "/tmp"},
        }
    )


def _decode(clip: str, n: int) -> list[Any]:
    from daemon.frames import Frame
    from daemon.media.decode import VideoReader

    out = []
    with VideoReader(clip) as r:
        for df in r.frames(yuv=True):
            out.append(Frame(df.image, df.index, df.pts, 0.0, df.layout))
            if len(out) == n:
                break
    return out


def child(stage: str, rounds: int, args: argparse.Namespace) -> dict:
    """One counted process: set-up, WARM[stage] warm-up items, then rounds * ITEMS[stage]."""
    import numpy as np

    warm, n = WARM.get(stage, 0), ITEMS.get(stage, 1)
    out: dict[str, Any] = {"stage": stage, "rounds": rounds}
    if stage == "decode":
        from daemon.media.decode import VideoReader

        with VideoReader(args.clip) as r:
            for k, _ in enumerate(r.frames(yuv=True), 1):
                if k == warm + rounds * n:
                    break
    elif stage == "colour":
        frames = _decode(args.clip, n)
        for f in frames[:warm]:
            f.image  # noqa: B018 - the conversion is the work
        for _ in range(rounds):
            for f in frames:
                f.image  # noqa: B018
    elif stage == "faces":
        from daemon.detect.combined import build_frame_detector, detect_frame

        images = [np.load(p) for p in args.images]
        det = build_frame_detector(_cfg(1, people=False).detect)  # people: their own stage
        runs = 0
        for i in range(warm + rounds * n):
            detect_frame(det, images[i % len(images)], i * 0.04)
            if i >= warm:
                runs += det.last_runs
        out["face_runs"] = runs
        det.close()
    elif stage == "people":
        from daemon.detect.ssd_people import PeopleDetector

        images = [np.load(p) for p in args.images]
        cfg = _cfg(1).detect
        people = PeopleDetector(cfg.people, cfg.models_dir, cfg.threads)
        for i in range(warm + rounds * n):
            people.detect(images[i % len(images)])
        people.close()
    elif stage == "track+mask":
        from daemon.mask.masker import Masker, grow
        from daemon.mask.people import tracked_mask_box
        from daemon.regions import Detection, Region
        from daemon.track.tracker import Tracker

        cfg = _cfg()
        frames = _decode(args.clip, warm + 2 * n)
        dets = json.loads(Path(args.dets).read_text())
        tracker = Tracker(cfg.track, bridge_s=cfg.gate.deadline_ms / 1000.0)
        masker = Masker(cfg.mask)
        for f in frames[: warm + rounds * n]:
            tracker.update(
                f.index, f.pts, [Detection(tuple(b), s, lab) for b, s, lab in dets[f.index]]
            )
            regions = []
            for b in tracker.boxes_at(f.index, f.pts):
                part = tracked_mask_box(b.label, b.box, cfg.mask.people)
                box = None if part is None else grow(part, cfg.mask.margin, f.width, f.height)
                if box is not None:
                    regions.append(
                        Region(box, b.label, cfg.mask.shape, b.score, b.box, (), b.track_id)
                    )
            masker.mask(f, masker.regions(regions, f.width, f.height))
            tracker.prune(f.index, f.pts)
    elif stage == "encode":
        from daemon.mask.masker import Masker
        from daemon.media.encode import H264Writer

        masker = Masker(_cfg().mask)
        masked = [masker.mask(f, []) for f in _decode(args.clip, warm + 2 * n)]
        h, w = masked[0].image.shape[:2]
        with (
            tempfile.TemporaryDirectory() as tmp,
            H264Writer(Path(tmp) / "out.mp4", w, h, 25.0) as wr,
        ):
            for m in masked[: warm + rounds * n]:
                wr.write(m)
            out["codec"] = wr.codec
    elif stage == "model":
        # one CenterFace run at the default input size (the CI's figure and the calibration's)
        from daemon.detect import build_detector

        det = build_detector(_cfg(1).detect)
        model = det._tiled._models.get()  # one window model, bare
        canvas = model_input(model.width, model.height)
        for _ in range(warm + rounds * n):
            model.infer(canvas)
        out["input"] = [model.width, model.height]
    elif stage == "photos":
        out["faces"] = faces_on(args.images)
    else:
        raise SystemExit(f"unknown stage {stage}")
    return out


def model_input(width: int, height: int) -> Any:
    """A fixed model input (seeded noise): the same everywhere, no data set needed (CI's fresh
    clone); XNNPACK's int8 kernels do the same work whatever the pixels."""
    import numpy as np

    return np.random.default_rng(14).integers(0, 256, (height, width, 3), dtype=np.uint8)


def faces_on(paths: list[str]) -> dict[str, list[list[float]]]:
    """CenterFace detections on still images, default schedule, 1 thread, each with what the
    masker made of it: x, y, w, h, score, then the masked region's mean B, G, R."""
    import time

    import cv2

    from daemon.detect import build_detector
    from daemon.frames import Frame
    from daemon.mask.masker import Masker

    det = build_detector(_cfg(1).detect)
    masker = Masker()
    res = {}
    for p in paths:
        img = cv2.imread(p)
        found = det.detect(img)
        h, w = img.shape[:2]
        masked = masker.mask(Frame(img, 0, 0.0, time.monotonic()), masker.regions(found, w, h))
        rows = []
        for d, r in zip(found, masked.regions, strict=False):
            x, y, bw, bh = r.box
            mean = masked.image[y : y + bh, x : x + bw].reshape(-1, 3).mean(axis=0)
            rows.append([*map(float, d.box), float(d.score), *map(float, mean)])
        res[Path(p).name] = rows
    return res


# --------------------------------------------------------------------------------------------
# host side
# --------------------------------------------------------------------------------------------


def emu_env() -> dict[str, Path]:
    return {
        "root": CACHE / "arm64-root",
        "site": CACHE / "site-aarch64",
        "plugin": CACHE / "libinsn.so",
    }


def ensure_emulator() -> None:
    e = emu_env()
    if not all(p.exists() for p in e.values()) or not shutil.which("qemu-aarch64"):
        subprocess.run([str(REPO / "scripts" / "aarch64-emu.sh")], check=True)


def count(cpu: str, stage: str, rounds: int, extra: list[str]) -> tuple[int, dict]:
    """Instructions one child process executed (all threads), and its JSON line."""
    e = emu_env()
    script = [str(Path(__file__).resolve()), "--child", stage, str(rounds), *extra]
    if cpu == "x86":
        py = str(Path(sys.executable))
        cmd = ["qemu-x86_64", "-cpu", "max", "-E", f"PYTHONPATH={REPO}"]
        cmd += ["-plugin", str(e["plugin"]), "-d", "plugin", py, *script]
    else:
        cmd = ["qemu-aarch64", "-cpu", CPUS[cpu], "-L", str(e["root"])]
        cmd += ["-E", f"PYTHONPATH={e['site']}:{REPO}", "-E", "PYTHONDONTWRITEBYTECODE=1"]
        cmd += ["-plugin", str(e["plugin"]), "-d", "plugin"]
        cmd += [str(e["root"] / "usr/bin/python3.11"), *script]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    m = re.search(r"total insns: (\d+)", p.stderr + p.stdout)
    if p.returncode != 0 or not m:
        raise SystemExit(f"{cpu} {stage} x{rounds} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    return int(m.group(1)), json.loads(lines[-1]) if lines else {}


def submit_pair(
    pool: ThreadPoolExecutor, cpu: str, stage: str, extra: list[str]
) -> tuple[Future, Future]:
    return pool.submit(count, cpu, stage, 1, extra), pool.submit(count, cpu, stage, 2, extra)


def per_item(stage: str, pair: tuple[Future, Future]) -> dict:
    """(count(R=2) - count(R=1)) / N: one item's instructions, start-up and set-up cancelled."""
    (c1, j1), (c2, j2) = pair[0].result(), pair[1].result()
    n = ITEMS[stage]
    res: dict[str, Any] = {"insn": (c2 - c1) / n, "run1": c1, "run2": c2}
    if "face_runs" in j2:
        res["face_runs_per_frame"] = (j2["face_runs"] - j1["face_runs"]) / n
    return res


def clip_path(name: str) -> Path:
    """``--clip``: a file under the data set's videos/ (or a path)."""
    p = Path(name)
    return p if p.is_absolute() or p.exists() else VIDEOS / name


def frame_size(clip: Path) -> tuple[int, int]:
    p = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height", "-of", "csv=p=0", str(clip)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    w, h = p.stdout.strip().split(",")[:2]
    return int(w), int(h)


def prepare(
    tmp: Path, res: list[str], src: Path = CLIP, span: tuple[float, float] | None = None
) -> dict[str, dict[str, Any]]:
    """Clips, sample frames (.npy) and x86 detections for each resolution (native, fast).
    ``src`` cut to ``span`` (seconds) and scaled to the size (left as it is when it already has
    that size and no span is asked for: the facenet clip at 1080)."""
    import numpy as np

    from daemon.detect.combined import build_frame_detector, detect_frame

    out: dict[str, dict[str, Any]] = {}
    for r in res:
        clip = src
        w, h = SIZES[r]
        if span is not None or frame_size(src) != (w, h):
            clip = tmp / f"{src.stem}_{r}p.mp4"
            cut = [] if span is None else ["-ss", f"{span[0]}", "-to", f"{span[1]}"]
            subprocess.run(
                ["ffmpeg", "-v", "error", "-y", *cut, "-i", str(src), "-vf", f"scale={w}:{h}",
                 "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-an", str(clip)],
                check=True,
            )  # fmt: skip
        frames = _decode(str(clip), 10_000)
        picks = [frames[round(i * (len(frames) - 1) / 3)] for i in range(4)]
        print(f"  {r}p: {len(frames)} frames of {src.name}"
              + ("" if span is None else f" {span[0]:g}-{span[1]:g} s")
              + f", detector frames {[f.index for f in picks]}")  # fmt: skip
        images = []
        for k, f in enumerate(picks):
            # frames of the shared public clip (not a camera's), in this run's temp dir, for the
            # emulated children; deleted with it
            p = tmp / f"{r}_{k}.npy"
            np.save(p, f.image)
            images.append(str(p))
        det = build_frame_detector(_cfg(2).detect)
        dets = []
        for f in frames[: WARM["track+mask"] + 2 * ITEMS["track+mask"]]:
            dets.append(
                [[list(d.box), d.score, d.label] for d in detect_frame(det, f.image, f.pts)]
            )
        det.close()
        (tmp / f"{r}_dets.json").write_text(json.dumps(dets))
        out[r] = {
            "clip": str(clip),
            "images": images,
            "dets": str(tmp / f"{r}_dets.json"),
            "frames": len(frames),
            "picks": [f.index for f in picks],
        }
    return out


def stage_args(p: dict[str, Any]) -> list[str]:
    return ["--clip", p["clip"], "--dets", p["dets"], "--images", *p["images"]]


def project(insn: dict[str, float], ipc: float, ghz: float, every: int = 1) -> dict[str, float]:
    """CPU-ms per stage and frame, their total, the fps 4 cores carry and the share of 4 cores
    25 fps takes, with the detector (colour conversion for it + detect) on every ``every``-th
    frame; the other stages run on every frame."""
    ms = {s: v / (ipc * ghz * 1e6) for s, v in insn.items()}
    if "people" in ms:
        ms["people"] /= PEOPLE_EVERY  # a pass on every PEOPLE_EVERY-th detector run
    total = sum(v / every if s in PER_RUN else v for s, v in ms.items())
    return {
        **ms,
        "total": total,
        "fps4": 1000 * 4 * EFFICIENCY / total,
        "share25": 100 * total * CAMERA_FPS / (1000 * 4 * EFFICIENCY),
    }


def check_faces(cpu: str, extra: list[str]) -> bool:
    """Emulated CenterFace on every dlib_faces photo == x86's within 1 px and 0.02 score, and
    the masker's output over each face within 1 grey level of x86's (OpenCV's ARM kernels)."""
    photos = sorted((DATA / "dlib_faces" / "images").glob("*.jpg"))
    paths = [str(p) for p in photos]
    native = faces_on(paths)
    _, j = count(cpu, "photos", 1, ["--images", *paths])
    ok = True
    for name, want in native.items():
        got = j["faces"].get(name, [])
        same = len(got) == len(want) and all(
            max(abs(a - b) for a, b in zip(g[:4], w[:4], strict=True)) <= 1.0
            and abs(g[4] - w[4]) <= 0.02
            and max(abs(a - b) for a, b in zip(g[5:], w[5:], strict=True)) <= 1.0
            for g, w in zip(sorted(got), sorted(want), strict=True)
        )
        print(f"  faces {cpu} {name}: {len(got)} vs x86 {len(want)}: {'pass' if same else 'FAIL'}")
        ok &= same
    return ok


def within_baseline(got: float, want: float, tolerance: float = CI_TOLERANCE) -> bool:
    """CI's verdict: at most ``tolerance`` over the committed count (fewer is always fine)."""
    return got <= want * (1 + tolerance)


def run_ci(pool: ThreadPoolExecutor) -> int:
    """CenterFace's instructions per run at its default input on cortex-a76 vs the baseline."""
    base = json.loads(BASELINE.read_text())
    got = per_item("model", submit_pair(pool, "a76", "model", []))["insn"]
    want = base["centerface_run_a76"]
    pct = 100 * (got / want - 1)
    print(f"pi-model ci: CenterFace {base['input']} run on cortex-a76: {got / 1e6:.1f} M "
          f"instructions (baseline {want / 1e6:.1f} M, {pct:+.1f} %)")  # fmt: skip
    if not within_baseline(got, want):
        print(f"pi-model ci: FAIL: more than {100 * CI_TOLERANCE:.0f} % over the baseline")
        return 1
    print("pi-model ci: ok")
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpus", default="a76,a72")
    ap.add_argument("--res", default="720,1080")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--json", type=Path, help="write the counts and projection here")
    ap.add_argument("--ci", action="store_true", help="detector instructions/run vs baseline")
    ap.add_argument("--validate", action="store_true", help="x86 counts vs native CPU-ms")
    ap.add_argument("--no-check", action="store_true", help="skip the dlib_faces check")
    ap.add_argument("--stages", default=",".join(STAGES), help="the stages to count")
    ap.add_argument("--no-model", action="store_true", help="skip the single-model-run count")
    ap.add_argument("--check-only", action="store_true", help="only the dlib_faces check")
    ap.add_argument("--repeat", type=int, default=3, help="--validate: native pipeline runs")
    ap.add_argument(
        "--report", type=Path, nargs="+", help="print the tables of earlier --json files, merged"
    )
    ap.add_argument("--child", nargs=2, metavar=("STAGE", "ROUNDS"), help=argparse.SUPPRESS)
    ap.add_argument(
        "--clip",
        default=CLIP.name,
        help="the clip to count, a file under the data set's videos/ (default: %(default)s)",
    )
    ap.add_argument("--span", help="START,END: seconds of --clip to count (default: all of it)")
    ap.add_argument("--dets", help=argparse.SUPPRESS)
    ap.add_argument("--images", nargs="*", default=[], help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args)))
        return
    if args.report:
        saved = merge([json.loads(p.read_text()) for p in args.report])
        if saved["counts"]:
            sizes = sorted({r for by_res in saved["counts"].values() for r in by_res}, key=int)
            report(saved, list(saved["counts"]), sizes)
        for name, scene in saved["scenes"].items():
            print(f"\n## Scene {name}: {scene_label(scene)}")
            part = merge([scene], scenes=False)
            sizes = sorted({r for by_res in part["counts"].values() for r in by_res}, key=int)
            report(part, list(part["counts"]), sizes, f"{name} ")
        return
    ensure_emulator()
    pool = ThreadPoolExecutor(max(1, args.jobs))
    if args.ci:
        raise SystemExit(run_ci(pool))
    cpus = ["x86"] if args.validate else args.cpus.split(",")
    res = args.res.split(",")
    src = clip_path(args.clip)
    span = None if not args.span else tuple(float(x) for x in args.span.split(","))
    if span is not None and len(span) != 2:
        raise SystemExit("--span START,END (seconds)")
    results: dict[str, Any] = {"ipc": IPC, "efficiency": EFFICIENCY, "clip": src.name}
    if span is not None:
        results["span_s"] = list(span)
    results["counts"] = {}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        prep = prepare(Path(tmp), res, src, span)  # type: ignore[arg-type]
        results["frames"] = {
            r: {"frames": prep[r]["frames"], "detector_frames": prep[r]["picks"]} for r in res
        }
        if args.validate:  # before the emulators load the machine
            results["native"] = native_figures(prep, res, args.repeat)
        stages = [] if args.check_only else args.stages.split(",")
        futs = {
            (cpu, r, s): submit_pair(pool, cpu, s, stage_args(prep[r]))
            for cpu in cpus
            for r in res
            for s in stages
        }
        model = {}
        if not (args.no_model or args.check_only):
            model = {c: submit_pair(pool, c, "model", stage_args(prep[res[0]])) for c in cpus}
        for (cpu, r, s), pair in futs.items():
            results["counts"].setdefault(cpu, {}).setdefault(r, {})[s] = per_item(s, pair)
            print(f"  counted {cpu} {r}p {s}: {results['counts'][cpu][r][s]['insn'] / 1e6:.1f} M")
        results["model_run"] = {c: per_item("model", pair) for c, pair in model.items()}
        checks = {}
        if not args.validate and not args.no_check:
            for c in cpus:
                checks[c] = check_faces(c, [])
        results["faces_check"] = checks
    results["elapsed_s"] = round(time.monotonic() - t0)
    if args.json:  # first: a report that fails must not lose the counts
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if not args.check_only:
        report(merge([results], scenes=False), cpus, res)
    if checks and not all(checks.values()):
        raise SystemExit("pi-model: emulated detections differ from x86's")


def native_ms_per_model_run(runs: int = 40) -> float:
    """CPU-ms of one CenterFace run on this machine, timed natively (1 thread, after warm-up)."""
    from daemon.detect import build_detector

    det = build_detector(_cfg(1).detect)
    model = det._tiled._models.get()  # one window model, bare
    canvas = model_input(model.width, model.height)
    for _ in range(5):
        model.infer(canvas)
    t = time.process_time()
    for _ in range(runs):
        model.infer(canvas)
    return 1000 * (time.process_time() - t) / runs


def native_figures(prep: dict[str, dict[str, Any]], res: list[str], repeat: int) -> dict:
    """What x86 measures natively: one model run's CPU-ms (the calibration) and
    bench/pipeline.py's CPU-ms/frame and detector runs/frame (--fast, default settings)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_pipeline", REPO / "bench/pipeline.py")
    assert spec is not None and spec.loader is not None
    bp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bp)
    out: dict[str, Any] = {"model_ms": native_ms_per_model_run()}
    for r in res:
        rows = [bp.run_child("fast", Path(prep[r]["clip"])) for _ in range(repeat)]
        plain = [bp.run_child("plain", Path(prep[r]["clip"])) for _ in range(repeat)]
        out[r] = {
            "cpu_ms_per_frame": statistics.median(x["cpu_ms_per_frame"] for x in rows),
            "runs_per_frame": statistics.median(x["detector_runs"] / x["frames"] for x in rows),
            # decode + mask with nothing to mask (its BGR copy) + encode, no detector
            "plain_cpu_ms_per_frame": statistics.median(x["cpu_ms_per_frame"] for x in plain),
        }
    return out


def merge(parts: list[dict[str, Any]], scenes: bool = True) -> dict[str, Any]:
    """Several --json results as one. A CPU counted only for some stages (the Pi 4 only for the
    models, whose kernels differ: no dot-product instructions) takes the others from cortex-a76
    at the same size, listed under "borrowed"."""
    out: dict[str, Any] = {"counts": {}, "model_run": {}, "faces_check": {}, "borrowed": []}
    out["scenes"] = {}
    for p in parts:
        for name, scene in p.get("scenes", {}).items():
            merge_scene(out["scenes"], name, scene)
        if scenes and p.get("clip", CLIP.name) != CLIP.name:  # another clip: its own scene
            merge_scene(out["scenes"], Path(p["clip"]).stem, p)
            continue
        for cpu, by_res in p.get("counts", {}).items():
            for r, st in by_res.items():
                out["counts"].setdefault(cpu, {}).setdefault(r, {}).update(st)
        out["model_run"].update(p.get("model_run", {}))
        out["faces_check"].update(p.get("faces_check", {}))
        if "native" in p:
            out["native"] = p["native"]
        out["elapsed_s"] = out.get("elapsed_s", 0) + p.get("elapsed_s", 0)
    for cpu, by_res in out["counts"].items():
        for r, st in by_res.items():
            for s in STAGES:
                if s not in st and s in out["counts"].get("a76", {}).get(r, {}):
                    st[s] = out["counts"]["a76"][r][s]
                    out["borrowed"].append(f"{cpu} {r}p {s}")
    return out


def merge_scene(scenes: dict[str, Any], name: str, part: dict[str, Any]) -> None:
    """Another clip's counts (its clip, span and frames kept beside them) into ``scenes``."""
    into = scenes.setdefault(name, {"counts": {}})
    for k in ("clip", "span_s", "note"):
        if k in part:
            into[k] = part[k]
    for r, fr in part.get("frames", {}).items():
        into.setdefault("frames", {})[r] = fr
    for cpu, by_res in part.get("counts", {}).items():
        for r, st in by_res.items():
            into["counts"].setdefault(cpu, {}).setdefault(r, {}).update(st)
    into["elapsed_s"] = into.get("elapsed_s", 0) + part.get("elapsed_s", 0)


def scene_label(part: dict[str, Any]) -> str:
    """The clip a result counted, its span and the frames the detector stages used."""
    label = part.get("clip", CLIP.name)
    if "span_s" in part:
        label += " {:g}-{:g} s".format(*part["span_s"])
    for r, fr in part.get("frames", {}).items():
        label += f"; {r}p: {fr['frames']} frames, detector on frames {fr['detector_frames']}"
    return label


def report(results: dict[str, Any], cpus: list[str], res: list[str], scene: str = "") -> None:
    """Markdown tables: instructions per frame (per detector run for colour and faces, per pass
    for people), then the projection in CPU-ms (people: per detector run) and fps. ``scene``
    prefixes the clip column (another clip than the facenet crowd)."""
    head = " | ".join(STAGES)
    print(f"\nInstructions (M) per frame; colour and faces per detector run, people per pass\n\n"
          f"| CPU | clip | {head} | face-model runs per detector run |\n"
          f"|---|---|{'---|' * len(STAGES)}---|")  # fmt: skip
    for cpu in cpus:
        for r in [r for r in res if r in results["counts"][cpu]]:
            c = results["counts"][cpu][r]
            cells = " | ".join(f"{c[s]['insn'] / 1e6:.0f}" if s in c else "–" for s in STAGES)
            runs = c.get("faces", {}).get("face_runs_per_frame", float("nan"))
            print(f"| {CPUS.get(cpu, cpu)} | {scene}{r}p | {cells} | {runs:.2f} |")
    if any(c in IPC for c in cpus):
        print(f"\nProjected CPU-ms (IPC x clock below); 4 cores at {EFFICIENCY:.0%} parallel "
              f"efficiency; share = share of 4 cores 25 fps needs\n\n"
              f"| board | clip | {head} | detector every frame: total, fps, share "
              f"| every 5th frame: total, fps, share |\n"
              f"|---|---|{'---|' * len(STAGES)}---|---|")  # fmt: skip
    for cpu in [c for c in cpus if c in IPC]:
        name, ghz = BOARD[cpu]
        for r in [r for r in res if r in results["counts"][cpu]]:
            if any(s not in results["counts"][cpu][r] for s in STAGES):
                continue  # some stages not counted (and none to borrow)
            insn = {s: results["counts"][cpu][r][s]["insn"] for s in STAGES}
            p = {k: project(insn, IPC[cpu], ghz, k) for k in CADENCES}
            cells = " | ".join(f"{p[1][s]:.1f}" for s in STAGES)
            tot = " | ".join(
                f"{p[k]['total']:.0f} ms, {p[k]['fps4']:.1f} fps, {p[k]['share25']:.0f} %"
                for k in CADENCES
            )
            print(f"| {name} ({CPUS[cpu]}, IPC {IPC[cpu]}, {ghz} GHz) | {scene}{r}p | {cells} "
                  f"| {tot} |")  # fmt: skip
    if "model_run" in results:
        for cpu, m in results["model_run"].items():
            print(f"\nOne CenterFace run (544x416, 1 thread) on {CPUS.get(cpu, cpu)}: "
                  f"{m['insn'] / 1e6:.1f} M instructions")  # fmt: skip
    if results.get("faces_check"):
        verdicts = [f"{c} {'pass' if ok else 'FAIL'}" for c, ok in results["faces_check"].items()]
        print("\ndlib_faces detections, emulated vs x86 (1 px, 0.02): " + ", ".join(verdicts))
    nat = results.get("native")
    if nat:
        rate = results["model_run"]["x86"]["insn"] / nat["model_ms"]  # instructions per CPU-ms
        print(f"\nx86 validation: one CenterFace run {nat['model_ms']:.2f} CPU-ms natively, "
              f"{results['model_run']['x86']['insn'] / 1e6:.1f} M instructions counted -> "
              f"{rate / 1e6:.2f} G instructions per CPU-second")  # fmt: skip
        for r in [r for r in res if r in results["counts"]["x86"]]:
            c = results["counts"]["x86"][r]
            if any(s not in c for s in STAGES) or r not in nat:
                continue  # (a size validated in another run: its own --json)
            runs = nat[r]["runs_per_frame"]
            per = {s: c[s]["insn"] for s in STAGES}
            per["people"] /= PEOPLE_EVERY
            for s in PER_RUN:  # once per detector run
                per[s] *= runs
            ms = sum(per.values()) / rate
            got = nat[r]["cpu_ms_per_frame"]
            print(f"  {r}p: projected {ms:.1f} CPU-ms/frame (detector on {runs:.2f} of frames, "
                  f"as bench/pipeline.py ran it) vs measured {got:.1f}: "
                  f"{100 * (ms / got - 1):+.0f} %")  # fmt: skip
            if "plain_cpu_ms_per_frame" in nat[r]:
                # the plain child: decode, the masker's BGR copy (a colour conversion), encode
                pms = (c["decode"]["insn"] + c["colour"]["insn"] + c["encode"]["insn"]) / rate
                pgot = nat[r]["plain_cpu_ms_per_frame"]
                print(f"  {r}p decode + encode alone (bench/pipeline.py's plain child): projected "
                      f"{pms:.1f} vs measured {pgot:.1f} CPU-ms/frame: "
                      f"{100 * (pms / pgot - 1):+.0f} %")  # fmt: skip
    if results.get("borrowed"):
        print("\ncounted on cortex-a76 and used as is: " + ", ".join(results["borrowed"]))
    print(f"\n(emulation and timing took {results.get('elapsed_s', 0)} s)")


if __name__ == "__main__":
    main()
