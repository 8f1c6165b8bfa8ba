"""Put the sealed originals back into a masked segment, off the box, with the owner's key.

Every record is checked on its own: a frame whose record fails authentication, or whose
decrypted time does not match the video frame it claims, is reported by chunk and frame and
left masked, with the rest of its H.264 group (which needs it to decode, at most two seconds);
everything else is still revealed. Each reveal appends an audit record beside the output.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import nacl.exceptions
import nacl.secret
import numpy as np
from nacl.public import PrivateKey, SealedBox

from daemon.escrow import sidecar as sc
from daemon.escrow.keys import fingerprint
from daemon.escrow.seal import associated_data, open_frame
from daemon.media.decode import bgr

AUDIT_NAME = "reveal-audit.jsonl"
PTS_TOLERANCE_S = 0.02  # the recorder may nudge a timestamp by a tick to keep them increasing


class RevealError(Exception):
    """Nothing can be revealed: wrong key, no sealed file, unreadable segment."""


@dataclass
class Selection:
    """What to reveal; everything when all are None."""

    start: float | None = None  # seconds from the segment's first frame
    end: float | None = None
    track: int | None = None
    region: tuple[int, int, int, int] | None = None  # x, y, w, h in the frame

    def wants(self, t: float, r: dict) -> bool:
        if self.start is not None and t < self.start - 1e-6:
            return False
        if self.end is not None and t > self.end + 1e-6:
            return False
        if self.track is not None and r.get("track") != self.track:
            return False
        if self.region is not None:
            x, y, w, h = r["box"]
            rx, ry, rw, rh = self.region
            if x >= rx + rw or rx >= x + w or y >= ry + rh or ry >= y + h:
                return False
        return True


@dataclass
class Report:
    frames: int = 0
    frames_revealed: int = 0
    regions_revealed: int = 0
    tracks: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    audit: Path | None = None


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _content_keys(
    side: sc.Sidecar, key: PrivateKey, report: Report
) -> dict[bytes, nacl.secret.Aead]:
    box = SealedBox(key)
    out: dict[bytes, nacl.secret.Aead] = {}
    for key_id, sealed in side.keys.items():
        try:
            out[key_id] = nacl.secret.Aead(box.decrypt(sealed))
        except nacl.exceptions.CryptoError:
            report.problems.append(f"content key {key_id.hex()[:8]} does not open with this key")
    return out


def reveal(
    segment: str | Path,
    key: PrivateKey,
    output: str | Path,
    select: Selection | None = None,
    *,
    crf: int = 10,
) -> Report:
    """Write ``output``: ``segment`` with the selected sealed regions restored."""
    segment, output = Path(segment), Path(output)
    select = select or Selection()
    if not output.resolve().parent.is_dir():
        raise RevealError(f"{output}: cannot write: its folder does not exist")
    side_path = sc.sidecar_path(segment)
    if not side_path.exists():
        raise RevealError(f"{segment}: no sealed regions ({side_path.name} is missing)")
    try:
        side = sc.read(side_path)
    except (OSError, sc.SidecarError) as exc:
        raise RevealError(str(exc)) from None
    mine, theirs = fingerprint(key.public_key), side.header.get("fingerprint")
    if theirs != mine:
        raise RevealError(
            f"this key ({mine}) cannot open {segment.name}: it was sealed to {theirs}"
        )
    report = Report(problems=list(side.problems))
    if not side.complete:
        report.problems.append("the sealed file has no end record (the recording was cut off)")
    aeads = _content_keys(side, key, report)
    try:
        src = av.open(str(segment))
    except (av.FFmpegError, OSError) as exc:
        raise RevealError(f"{segment}: cannot open: {exc}") from None
    with src:
        offset = _pts_offset(segment, side.frames, aeads)
        sealed = _Unsealer(side.frames, aeads, report).frames()
        pending = next(sealed, None)
        vin = src.streams.video[0]
        try:
            dst = av.open(str(output), mode="w")
        except (av.FFmpegError, OSError) as exc:
            raise RevealError(f"{output}: cannot write: {exc}") from None
        with dst:
            vout = dst.add_stream("libx264", rate=vin.average_rate or Fraction(25))
            vout.width, vout.height = vin.codec_context.width, vin.codec_context.height
            vout.pix_fmt = "yuv420p"
            vout.options = {"crf": str(crf), "preset": "veryfast"}
            t0: float | None = None
            for i, frame in enumerate(src.decode(vin)):
                t = float(frame.time or 0.0)
                t0 = t if t0 is None else t0
                img = bgr(frame)
                while pending is not None and pending[0] <= i:
                    if pending[0] == i:
                        _paste(img, pending, t - t0, offset, select, report)
                    else:
                        report.problems.append(f"frame {pending[0]}: sealed out of order, skipped")
                    pending = next(sealed, None)
                out = av.VideoFrame.from_ndarray(
                    cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420), format="yuv420p"
                )
                out.pts, out.time_base = frame.pts, frame.time_base
                for packet in vout.encode(out):
                    dst.mux(packet)
                report.frames += 1
            for packet in vout.encode():
                dst.mux(packet)
    if pending is not None or next(sealed, None) is not None:
        report.problems.append("sealed frames beyond the video's end (it was cut back)")
    report.audit = _audit(segment, side_path, output, mine, select, report)
    return report


def _decrypt(rec: sc.FrameRecord, aeads: dict[bytes, nacl.secret.Aead]) -> bytes | None:
    aead = aeads.get(rec.key_id)
    if aead is None:
        return None
    try:
        return aead.decrypt(rec.ciphertext, associated_data(rec.key_id, rec.seq))
    except nacl.exceptions.CryptoError:
        return None


@dataclass
class _Stream:
    decoder: av.codec.context.CodecContext | None = None
    expect: int = 0  # the sequence number the next record of the group must have
    broken: str = ""  # why the rest of the group cannot decode
    skipped: int = 0


class _Unsealer:
    """Decrypts and decodes the sidecar's H.264 streams (one per content key) in file order."""

    def __init__(
        self,
        records: list[sc.FrameRecord],
        aeads: dict[bytes, nacl.secret.Aead],
        report: Report,
    ) -> None:
        self.records, self.aeads, self.report = records, aeads, report
        self.streams: dict[bytes, _Stream] = {}

    def _end_group(self, st: _Stream) -> None:
        if st.skipped:
            self.report.problems.append(
                f"{st.skipped} more frames of that group left masked (they need it to decode)"
            )
        st.skipped, st.broken = 0, ""

    def frames(self) -> Iterator[tuple[int, dict, np.ndarray]]:
        """(segment frame number, record header, decoded canvas) for each frame that opens."""
        for rec in self.records:
            st = self.streams.setdefault(rec.key_id, _Stream())
            where = f"chunk {rec.chunk}, frame {rec.frame_no}"
            plain = _decrypt(rec, self.aeads)
            if plain is None:
                self._end_group(st)
                why = (
                    "its content key is missing"
                    if rec.key_id not in self.aeads
                    else ("fails authentication (tampered or damaged)")
                )
                self.report.problems.append(f"{where}: {why}, left masked")
                st.broken = why
                continue
            head, packets = open_frame(plain)
            if head["keyframe"]:
                self._end_group(st)
                st.decoder = av.CodecContext.create("h264", "r")
                st.decoder.thread_count = 1  # one picture out per packet, in order
            elif not st.broken and (st.decoder is None or rec.seq != st.expect):
                self.report.problems.append(
                    f"{where}: a frame of its group is missing, left masked with the group"
                )
                st.broken = "missing"
            if st.broken:
                st.skipped += 0 if rec.lead_in else 1
                continue
            st.expect = rec.seq + 1
            try:
                pics = [f for p in packets for f in st.decoder.decode(av.Packet(p))]  # type: ignore[union-attr]
            except av.FFmpegError:
                pics = []
            if not pics:
                self.report.problems.append(f"{where}: does not decode, left masked")
                st.broken = "undecodable"
                continue
            if not rec.lead_in:
                yield rec.frame_no, head, bgr(pics[-1])
        for st in self.streams.values():
            self._end_group(st)


def _pts_offset(
    segment: Path,
    records: list[sc.FrameRecord],
    aeads: dict[bytes, nacl.secret.Aead],
) -> float | None:
    """Sealed pts minus video time, the median over every record that opens: a record moved to
    another frame then stands out, whichever frame it was moved to."""
    with av.open(str(segment)) as src:
        stream = src.streams.video[0]
        tb = float(stream.time_base)
        pts = sorted(p.pts for p in src.demux(stream) if p.pts is not None)
    if not pts:
        return None
    offs = []
    for rec in records:
        if rec.lead_in or rec.frame_no >= len(pts):
            continue
        plain = _decrypt(rec, aeads)
        if plain is not None:
            offs.append(open_frame(plain)[0]["pts"] - (pts[rec.frame_no] - pts[0]) * tb)
    return float(np.median(offs)) if offs else None


def _paste(
    img: np.ndarray,
    sealed: tuple[int, dict, np.ndarray],
    t: float,
    offset: float | None,
    select: Selection,
    report: Report,
) -> None:
    """Paste the selected regions of a decoded sealed frame into ``img`` (frame time ``t``)."""
    frame_no, head, canvas = sealed
    where = f"frame {frame_no}"
    if offset is not None and abs(head["pts"] - t - offset) > PTS_TOLERANCE_S:
        report.problems.append(f"{where}: sealed for another frame (time mismatch), left masked")
        return
    h, w = img.shape[:2]
    ch, cw = canvas.shape[:2]
    if (cw, ch) != (w - w % 2, h - h % 2):
        report.problems.append(f"{where}: sealed at another frame size, left masked")
        return
    hit = 0
    for r in head["regions"]:
        if not select.wants(t, r):
            continue
        x, y, bw, bh = r["box"]
        img[y : y + bh, x : x + bw] = canvas[y : y + bh, x : x + bw]
        hit += 1
        key = str(r.get("track"))
        report.tracks[key] = report.tracks.get(key, 0) + 1
    if hit:
        report.frames_revealed += 1
        report.regions_revealed += hit


def _audit(
    segment: Path, side: Path, output: Path, fp: str, select: Selection, report: Report
) -> Path:
    path = output.resolve().parent / AUDIT_NAME
    entry = {
        "revealed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "segment": str(segment.resolve()),
        "segment_sha256": _sha256(segment),
        "sealed_sha256": _sha256(side),
        "key_fingerprint": fp,
        "output": str(output.resolve()),
        "from_s": select.start,
        "to_s": select.end,
        "track": select.track,
        "region": list(select.region) if select.region else None,
        "frames": report.frames,
        "frames_revealed": report.frames_revealed,
        "regions_revealed": report.regions_revealed,
        "regions_by_track": report.tracks,
        "problems": report.problems,
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
    return path
