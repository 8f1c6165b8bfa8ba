"""Put the sealed originals back into a masked segment, off the box, with the owner's key.

Every record is checked on its own: a frame whose record fails authentication, or whose
decrypted time does not match the video frame it claims, is reported by chunk and frame and
left masked; the rest is still revealed. Each reveal appends an audit record beside the output.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
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
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Write ``output``: ``segment`` with the selected sealed regions restored."""
    segment, output = Path(segment), Path(output)
    select = select or Selection()
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
    records = {r.frame_no: r for r in side.frames}
    try:
        src = av.open(str(segment))
    except (av.FFmpegError, OSError) as exc:
        raise RevealError(f"{segment}: cannot open: {exc}") from None
    with src:
        offset = _pts_offset(segment, records, aeads)
        vin = src.streams.video[0]
        rate = vin.average_rate or Fraction(25)
        dst = av.open(str(output), mode="w")
        with dst:
            vout = dst.add_stream("libx264", rate=rate)
            vout.width, vout.height = vin.codec_context.width, vin.codec_context.height
            vout.pix_fmt = "yuv420p"
            vout.options = {"crf": str(crf), "preset": "veryfast"}
            t0: float | None = None
            for i, frame in enumerate(src.decode(vin)):
                t = float(frame.time or 0.0)
                t0 = t if t0 is None else t0
                img = frame.to_ndarray(format="bgr24")
                rec = records.get(i)
                if rec is not None:
                    _paste(img, rec, t - t0, offset, aeads, select, report)
                out = av.VideoFrame.from_ndarray(img, format="bgr24")
                out.pts, out.time_base = frame.pts, frame.time_base
                for packet in vout.encode(out):
                    dst.mux(packet)
                report.frames += 1
                if progress is not None:
                    progress(i)
            for packet in vout.encode():
                dst.mux(packet)
    extra = set(records) - set(range(report.frames))
    if extra:
        report.problems.append(f"{len(extra)} sealed frames beyond the video's end (cut back)")
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


def _pts_offset(
    segment: Path,
    records: dict[int, sc.FrameRecord],
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
    for n, rec in records.items():
        if n >= len(pts):
            continue
        plain = _decrypt(rec, aeads)
        if plain is not None:
            offs.append(open_frame(plain)[0]["pts"] - (pts[n] - pts[0]) * tb)
    return float(np.median(offs)) if offs else None


def _paste(
    img: np.ndarray,
    rec: sc.FrameRecord,
    t: float,
    offset: float | None,
    aeads: dict[bytes, nacl.secret.Aead],
    select: Selection,
    report: Report,
) -> None:
    """Decrypt ``rec`` and paste its selected regions into ``img`` (frame time ``t``)."""
    where = f"chunk {rec.chunk}, frame {rec.frame_no}"
    if rec.key_id not in aeads:
        report.problems.append(f"{where}: its content key is missing or damaged, left masked")
        return
    plain = _decrypt(rec, aeads)
    if plain is None:
        report.problems.append(f"{where}: fails authentication (tampered or damaged), left masked")
        return
    head, blobs = open_frame(plain)
    if offset is not None and abs(head["pts"] - t - offset) > PTS_TOLERANCE_S:
        report.problems.append(f"{where}: sealed for another frame (time mismatch), left masked")
        return
    h, w = img.shape[:2]
    if list(head["size"])[:2] != [w, h]:
        report.problems.append(f"{where}: sealed at another frame size, left masked")
        return
    hit = 0
    for r, blob in zip(head["regions"], blobs, strict=True):
        if not select.wants(t, r):
            continue
        crop = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
        x, y, bw, bh = r["box"]
        if crop is None or crop.shape[:2] != (bh, bw):
            report.problems.append(f"{where}: a sealed region does not decode, left masked")
            continue
        img[y : y + bh, x : x + bw] = crop
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
