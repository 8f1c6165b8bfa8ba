"""The ``<segment>.sealed`` file beside each segment: its format, writer and reader.

Layout: ``MAGIC``, a 4-byte length and a JSON header (segment name, the owner key's
fingerprint), then records ``tag(4) | length(4) | body``:

* ``CHK1`` chunk number: starts each chunk; a chunk is written with one ``write`` when the video
  completes a fragment, so after a power cut or ``kill -9`` every complete chunk opens, as
  every complete fragment plays;
* ``KEY1`` key id and the content key sealed to the owner (once per key per file);
* ``FRM1`` segment frame number, flags, key id, sequence number, ciphertext. Flag 1: a
  keyframe; flag 2: lead-in, a frame of an earlier segment that the H.264 group of this
  segment's first frames needs to decode (frame number ``LEAD_IN``);
* ``END1`` frame and chunk counts, written on a clean close.

Only ciphertext and sealed keys are written. The reader never trusts lengths: a damaged record
is reported with its chunk and the reader goes on at the next chunk.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from daemon.escrow.seal import KEY_ID_BYTES, SealedFrame, Sealer
from daemon.frames import MaskedFrame
from daemon.logs import fields

log = logging.getLogger(__name__)

MAGIC = b"VCSEAL1\n"
SUFFIX = ".sealed"
_REC = struct.Struct(">4sI")
_MAX_RECORD = 64 * 1024 * 1024
KEYFRAME, LEAD = 1, 2
LEAD_IN = 0xFFFFFFFF
_FRM_HEAD = 5 + KEY_ID_BYTES + 8
HISTORY_KEYS = 3  # streams remembered for lead-ins: the current one and those just before


def sidecar_path(segment: str | os.PathLike[str]) -> Path:
    return Path(os.fspath(segment) + SUFFIX)


class SidecarWriter:
    """Appends sealed frames for one segment. Buffers ciphertext until :meth:`flush`."""

    def __init__(self, segment: Path, fingerprint: str) -> None:
        self.path = sidecar_path(segment)
        head = json.dumps({"version": 1, "segment": segment.name, "fingerprint": fingerprint})
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o640)
        self._buf: list[bytes] = []
        self._keys: set[bytes] = set()
        self.chunks = 0
        self.frames = 0
        self._write(MAGIC + struct.pack(">I", len(head)) + head.encode())

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def add(self, frame_no: int, sealed: SealedFrame, lead_in: bool = False) -> None:
        if sealed.key.key_id not in self._keys:
            self._keys.add(sealed.key.key_id)
            self._buf.append(_record(b"KEY1", sealed.key.key_id + sealed.key.sealed))
        flags = (KEYFRAME if sealed.keyframe else 0) | (LEAD if lead_in else 0)
        body = (
            struct.pack(">IB", LEAD_IN if lead_in else frame_no, flags)
            + sealed.key.key_id
            + struct.pack(">Q", sealed.seq)
            + sealed.ciphertext
        )
        self._buf.append(_record(b"FRM1", body))
        if not lead_in:
            self.frames += 1

    def flush(self) -> None:
        """Write what is buffered as one chunk (called at each video fragment boundary)."""
        if not self._buf:
            return
        data = _record(b"CHK1", struct.pack(">I", self.chunks)) + b"".join(self._buf)
        self._buf.clear()
        self.chunks += 1
        self._write(data)

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self.flush()
            self._write(_record(b"END1", struct.pack(">II", self.frames, self.chunks)))
        finally:
            os.close(self._fd)
            self._fd = -1


class EscrowRecording:
    """The recorder's side of escrow: one sidecar per segment, chunks cut where the video's
    fragments are, and the H.264 groups kept whole.

    Every sealed frame the recorder receives passes :meth:`saw`, written or not (events mode
    keeps a pre-roll; a segment's first frames may have been sealed before it began), so that
    a segment whose first sealed frame is not a keyframe can carry the frames its group needs
    as lead-ins. Only ciphertext is kept.
    """

    def __init__(self, sealer: Sealer) -> None:
        self.sealer = sealer
        self.writer: SidecarWriter | None = None
        self._fragments = 0
        self._history: dict[bytes, list[SealedFrame]] = {}  # key id -> since its last keyframe
        self._last_seq: dict[bytes, int] = {}  # per key: the last sequence number written here

    def saw(self, frame: MaskedFrame) -> None:
        s = frame.sealed
        if s is None:
            return
        group = self._history.setdefault(s.key.key_id, [])
        if s.keyframe:
            group.clear()
        group.append(s)
        while len(self._history) > HISTORY_KEYS:
            del self._history[next(iter(self._history))]

    def open(self, segment: Path) -> None:
        """A fresh content key and the segment's ``.sealed`` file (OSError if it cannot be)."""
        self.close()
        self.sealer.rotate()
        self.writer = SidecarWriter(segment, self.sealer.fingerprint)
        self._fragments = 0
        self._last_seq = {}

    def after_frame(self, frame: MaskedFrame, frame_no: int, fragments: int) -> bool:
        """Frame ``frame_no`` of the segment is in the video, which has completed ``fragments``
        fragments. False when the sidecar failed (logged; it is closed and not used again)."""
        w = self.writer
        if w is None:
            return False
        try:
            if fragments != self._fragments:
                self._fragments = fragments
                w.flush()
            s = frame.sealed
            if s is not None:
                if not s.keyframe and self._last_seq.get(s.key.key_id) != s.seq - 1:
                    last = self._last_seq.get(s.key.key_id, -1)
                    for lead in self._history.get(s.key.key_id, []):
                        if last < lead.seq < s.seq:
                            w.add(frame_no, lead, lead_in=True)
                w.add(frame_no, s)
                self._last_seq[s.key.key_id] = s.seq
        except OSError as exc:
            log.error("sealed regions not written", extra=fields(path=w.path, error=exc))
            self.close()
            return False
        return True

    def close(self) -> None:
        w, self.writer = self.writer, None
        if w is None:
            return
        try:
            w.close()
        except OSError as exc:
            log.error("sealed file not finished", extra=fields(path=w.path, error=exc))


def _record(tag: bytes, body: bytes) -> bytes:
    return _REC.pack(tag, len(body)) + body


# -- reading (off the box, by ``veilcam reveal``) ---------------------------------------------


@dataclass
class FrameRecord:
    chunk: int
    frame_no: int  # LEAD_IN for a lead-in
    flags: int
    key_id: bytes
    seq: int
    ciphertext: bytes

    @property
    def lead_in(self) -> bool:
        return bool(self.flags & LEAD)


@dataclass
class Sidecar:
    header: dict
    keys: dict[bytes, bytes] = field(default_factory=dict)  # key id -> sealed content key
    frames: list[FrameRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    chunks: int = 0
    complete: bool = False  # the END1 record was found (a clean close)


class SidecarError(Exception):
    pass


def read(path: str | Path) -> Sidecar:
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise SidecarError(f"{path} is not a veilcam sealed file")
    (n,) = struct.unpack_from(">I", data, len(MAGIC))
    try:
        header = json.loads(data[len(MAGIC) + 4 : len(MAGIC) + 4 + n])
    except ValueError:
        raise SidecarError(f"{path}: damaged header") from None
    if not isinstance(header, dict):
        raise SidecarError(f"{path}: damaged header")
    out = Sidecar(header)
    chunk = -1
    for off, tag, body, problem in _records(data, len(MAGIC) + 4 + n):
        if problem:
            out.problems.append(f"chunk {max(chunk, 0)}: {problem} at byte {off}")
            continue
        if tag == b"CHK1" and len(body) == 4:
            chunk = struct.unpack(">I", body)[0]
            out.chunks += 1
        elif tag == b"KEY1" and len(body) > KEY_ID_BYTES:
            out.keys[body[:KEY_ID_BYTES]] = body[KEY_ID_BYTES:]
        elif tag == b"FRM1" and len(body) > _FRM_HEAD:
            frame_no, flags = struct.unpack_from(">IB", body, 0)
            key_id = body[5 : 5 + KEY_ID_BYTES]
            (seq,) = struct.unpack_from(">Q", body, 5 + KEY_ID_BYTES)
            ct = body[_FRM_HEAD:]
            out.frames.append(FrameRecord(chunk, frame_no, flags, key_id, seq, ct))
        elif tag == b"END1":
            out.complete = True
        else:
            out.problems.append(f"chunk {max(chunk, 0)}: unreadable record at byte {off}")
    return out


def _records(data: bytes, off: int) -> Iterator[tuple[int, bytes, bytes, str]]:
    """(offset, tag, body, problem) for each record; after damaged framing, resync at CHK1."""
    end = len(data)
    while off < end:
        if end - off < _REC.size:
            yield off, b"", b"", "truncated record (the file ends mid-write)"
            return
        tag, n = _REC.unpack_from(data, off)
        known = tag in (b"CHK1", b"KEY1", b"FRM1", b"END1")
        if not known or n > _MAX_RECORD or off + _REC.size + n > end:
            if known and off + _REC.size + n > end and n <= _MAX_RECORD:
                yield off, b"", b"", "truncated record (the file ends mid-write)"
            else:
                yield off, b"", b"", "damaged record framing, skipped to the next chunk"
            nxt = data.find(b"CHK1", off + 1)
            if nxt < 0:
                return
            off = nxt
            continue
        yield off, tag, data[off + _REC.size : off + _REC.size + n], ""
        off += _REC.size + n
