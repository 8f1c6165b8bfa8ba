"""``veilcam mask INPUT... --output DIR``: anonymise images and videos, as deface does.

Folders are walked recursively and outputs keep their relative path under ``--output``
(videos become ``.mp4``, H.264). ``--regions FILE`` writes JSON Lines of exactly what was
masked. A file that cannot be read is reported by name and skipped; the command goes on and
exits non-zero at the end. No unmasked output is ever written: if detection fails for an image
or a video frame, that image or frame is written fully obscured.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXT = {
    ".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts", ".mts", ".mpg", ".mpeg", ".flv",
    ".wmv", ".3gp", ".gif", ".h264", ".hevc",
}  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image/video files or folders")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="where masked files go")
    p.add_argument("--regions", metavar="FILE", help="write what was masked as JSON Lines")
    p.add_argument("--config", metavar="FILE", help="config file (default: built-in defaults)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. mask.style=mosaic",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


@dataclass(frozen=True)
class Job:
    src: Path
    rel: Path  # relative path under the input folder (the name for a file input)
    video: bool


def collect(inputs: list[str]) -> tuple[list[Job], list[str]]:
    """Jobs for every input, folders walked recursively; and problems with the inputs."""
    jobs: list[Job] = []
    problems: list[str] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                ext = f.suffix.lower()
                if ext in IMAGE_EXT or ext in VIDEO_EXT:
                    jobs.append(Job(f, f.relative_to(p), ext in VIDEO_EXT))
        elif p.is_file():
            jobs.append(Job(p, Path(p.name), p.suffix.lower() not in IMAGE_EXT))
        else:
            problems.append(f"{raw}: no such file or folder")
    return jobs, problems


def _out_path(out_dir: Path, job: Job) -> Path:
    return out_dir / (job.rel.with_suffix(".mp4") if job.video else job.rel)


class Runner:
    """Masks each job; keeps the detector, masker and regions file across jobs."""

    def __init__(self, args: argparse.Namespace, cfg: Any, n_videos: int, n_images: int) -> None:
        from daemon.detect.combined import build_frame_detector
        from daemon.mask.masker import Masker

        self.args = args
        self.cfg = cfg
        # no tracker here: frame t is masked with what frames t - video_hold_frames .. t + ahead
        # found, so a person pass every video_hold_frames + 1 frames leaves no frame without
        # one at most video_hold_frames old (photos: always, ``still``)
        self.detector = build_frame_detector(cfg.detect, every=cfg.mask.video_hold_frames + 1)
        self.masker = Masker(cfg.mask)
        self.out_dir = Path(args.output)
        self.failed: set[Path] = set()
        self.regions_file: IO[str] | None = None
        if args.regions:
            Path(args.regions).parent.mkdir(parents=True, exist_ok=True)
            self.regions_file = open(args.regions, "w", encoding="utf-8")  # noqa: SIM115
        # one video alone writes its frames to --regions; several get a file each
        self.video_regions_beside = n_videos > 1 or (n_videos == 1 and n_images > 0)

    def close(self) -> None:
        if self.regions_file is not None:
            self.regions_file.close()
        self.detector.close()

    def fail(self, src: Path, msg: str) -> None:
        self.failed.add(src)
        print(f"veilcam mask: {msg}", file=sys.stderr)

    def image(self, job: Job) -> None:
        import cv2

        from daemon.detect import DetectorError
        from daemon.frames import Frame, require_masked

        img = cv2.imread(str(job.src), cv2.IMREAD_COLOR)
        if img is None:
            self.fail(job.src, f"{job.src}: cannot read image (unsupported, corrupt or unreadable)")
            return
        frame = Frame(img, index=0, pts=0.0, captured=0.0)
        h, w = img.shape[:2]
        try:
            regions = self.masker.regions(self.detector.detect(img, still=True), w, h)
            masked = self.masker.mask(frame, regions)
        except DetectorError as exc:
            self.fail(job.src, f"{job.src}: detection failed, output fully obscured: {exc}")
            masked = self.masker.obscure(frame, "detection-failed")
            regions = []
        out = _out_path(self.out_dir, job)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(out), require_masked(masked).image):
            self.fail(job.src, f"{out}: cannot write image")
            return
        if self.regions_file is not None:
            line = {"image": job.rel.as_posix(), "width": w, "height": h}
            line["regions"] = [r.to_json() for r in regions]
            if masked.obscured:
                line["obscured"] = True
            self.regions_file.write(json.dumps(line) + "\n")

    def video(self, job: Job, bar_position: int) -> None:
        from tqdm import tqdm

        from daemon.detect import DetectorError
        from daemon.frames import Frame
        from daemon.mask.temporal import merge
        from daemon.media.decode import DecodeError, VideoReader
        from daemon.media.encode import EncodeError, H264Writer

        out = _out_path(self.out_dir, job)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            reader = VideoReader(job.src)
        except DecodeError as exc:
            self.fail(job.src, str(exc))
            return
        regions_out: IO[str] | None = self.regions_file
        own_regions = False
        if self.regions_file is not None and self.video_regions_beside:
            regions_out = open(str(out) + ".regions.jsonl", "w", encoding="utf-8")  # noqa: SIM115
            own_regions = True
        # frame t is masked with the faces found on frames t - hold .. t + ahead (mask.temporal)
        hold = self.cfg.mask.video_hold_frames
        ahead = self.cfg.detect.schedule.tile_every - 1 + hold
        writer: H264Writer | None = None
        pending: deque[Frame] = deque()  # decoded, not yet written
        found: dict[int, list | None] = {}  # frame index -> detections (None: failed)
        obscured = 0
        self.detector.reset()  # no tile results carried over from the previous video
        bar = tqdm(
            total=reader.frame_count or None,
            desc=job.rel.as_posix(),
            unit="f",
            position=bar_position,
            leave=False,
            disable=self.args.quiet,
            file=sys.stderr,
        )

        parts: list[Path] = [out]  # a new output file for each change of resolution
        size: list[tuple[int, int]] = []  # the frame size the open writer was made for

        def emit() -> None:
            nonlocal writer, obscured
            frame = pending.popleft()
            t = frame.index
            if found[t] is None:  # detection failed on this very frame: fail closed
                masked = self.masker.obscure(frame, "detection-failed")
                regions = []
                obscured += 1
            else:
                near = (found.get(i) for i in range(t - hold, t + ahead + 1))
                dets = merge(d for ds in near if ds for d in ds)
                regions = self.masker.regions(dets, frame.width, frame.height)
                masked = self.masker.mask(frame, regions)
            found.pop(t - hold, None)
            if writer is not None and size[-1] != (frame.width, frame.height):
                # a stream whose resolution changes: one encoder cannot take both sizes (it would
                # keep the first size and crop), so the rest goes to a new file, said on stderr
                old = size[-1]
                writer.close()
                writer = None
                parts.append(out.with_name(f"{out.stem}_part{len(parts) + 1}{out.suffix}"))
                print(
                    f"veilcam mask: {job.src}: resolution changed from {old[0]}x{old[1]} to "
                    f"{frame.width}x{frame.height} at frame {t}; continued in {parts[-1]}",
                    file=sys.stderr,
                )
            if writer is None:
                writer = H264Writer(parts[-1], frame.width, frame.height, reader.fps, threads=1)
                size.append((frame.width, frame.height))
            writer.write(masked)
            if regions_out is not None:
                line: dict[str, Any] = {"frame": frame.index}
                line["regions"] = [r.to_json() for r in regions]
                if masked.obscured:
                    line["obscured"] = True
                regions_out.write(json.dumps(line) + "\n")
            bar.update(1)

        in_size: tuple[int, int] | None = None
        try:
            for df in reader.frames():
                frame = Frame(df.image, index=df.index, pts=df.pts, captured=0.0)
                new = (frame.width, frame.height)
                if in_size is not None and new != in_size:
                    # a resolution change: the frames of the old size go out first, and the
                    # faces held from them are rescaled so that their masks stay on the faces
                    while pending:
                        emit()
                    sx, sy = new[0] / in_size[0], new[1] / in_size[1]
                    for i in list(found):
                        found[i] = _rescale(found[i], sx, sy)
                    self.detector.reset()  # tile results are in the old frame's coordinates
                in_size = new
                try:
                    dets: list | None = self.detector.detect(df.image, stream=True)
                except DetectorError:
                    dets = None
                pending.append(frame)
                found[df.index] = dets
                if len(pending) > ahead:
                    emit()
            while pending:
                emit()
        except DecodeError as exc:
            while pending:
                emit()
            self.fail(job.src, f"{exc} (the {bar.n} frames before it were written to {out})")
        except EncodeError as exc:
            self.fail(job.src, str(exc))
        finally:
            bar.close()
            reader.close()
            if writer is not None:
                try:
                    writer.close()
                except EncodeError as exc:
                    self.fail(job.src, str(exc))
            if own_regions and regions_out is not None:
                regions_out.close()
        if writer is None and job.src not in self.failed:
            self.fail(job.src, f"{job.src}: no video frames decoded, nothing written")
        if obscured:
            self.fail(
                job.src, f"{job.src}: detection failed on {obscured} frames, written fully obscured"
            )


def _rescale(dets: list | None, sx: float, sy: float) -> list | None:
    """Detections of the old resolution in the new one (as on branch h11b)."""
    from daemon.regions import Detection

    if dets is None:
        return None
    return [
        Detection((d.box[0] * sx, d.box[1] * sy, d.box[2] * sx, d.box[3] * sy), d.score, d.label)
        for d in dets
    ]


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from daemon.commands._common import load_config
    from daemon.detect import ModelError

    cfg = load_config(args.config, args.set)
    if cfg is None:
        return 2
    jobs, problems = collect(args.inputs)
    for p in problems:
        print(f"veilcam mask: {p}", file=sys.stderr)
    out_dir = Path(args.output).resolve()
    for raw in args.inputs:
        src = Path(raw).resolve()
        if src == out_dir or (src.is_file() and src.parent == out_dir):
            print(
                f"veilcam mask: --output {args.output} would overwrite the input", file=sys.stderr
            )
            return 2
    try:
        runner = Runner(args, cfg, sum(j.video for j in jobs), sum(not j.video for j in jobs))
    except ModelError as exc:
        print(f"veilcam mask: {exc}", file=sys.stderr)
        return 1
    try:
        for job in tqdm(jobs, unit="file", disable=args.quiet or len(jobs) < 2, file=sys.stderr):
            if job.video:
                runner.video(job, bar_position=1 if len(jobs) > 1 else 0)
            else:
                runner.image(job)
    finally:
        runner.close()
    clean = len(jobs) - len(runner.failed)
    print(
        f"{clean} of {len(jobs)} files masked without problems into {args.output}", file=sys.stderr
    )
    return 1 if runner.failed or problems else 0
