"""Sealing inside the masker: crops of the original frame, JPEG-encoded and encrypted at once.

Privacy rule 1 allows raw pixels out only sealed to a key the box does not hold. The masker
calls :meth:`Sealer.seal` on its own copy of the frame before it hides anything; the crops live
only in this call's memory and leave it as ciphertext in a :class:`SealedFrame`, which is all a
sink ever sees.

Keys: a fresh 32-byte content key per segment (the recorder calls :meth:`Sealer.rotate` when it
opens one), sealed to the owner's X25519 public key with a libsodium sealed box; each frame is
one XChaCha20-Poly1305 message under the content key whose associated data binds it to the key
id and a sequence number, so records cannot be swapped, reordered or moved between segments
unnoticed. Each frame is its own message so that one damaged frame never hides the others.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import nacl.secret
import nacl.utils
import numpy as np
from nacl.public import PublicKey, SealedBox

from daemon.escrow.config import EscrowConfig
from daemon.escrow.keys import fingerprint, load_public
from daemon.regions import Region

KEY_ID_BYTES = 16
AD_PREFIX = b"veilcam-seal-1"


def associated_data(key_id: bytes, seq: int) -> bytes:
    return AD_PREFIX + key_id + struct.pack(">Q", seq)


@dataclass(frozen=True, slots=True)
class ContentKey:
    """A segment's content key as the box may keep it: the id and its sealed form (the raw key
    stays inside :class:`Sealer`)."""

    key_id: bytes
    sealed: bytes  # the key sealed to the owner's public key (80 bytes)


@dataclass(frozen=True, slots=True)
class SealedFrame:
    """One frame's sealed regions: ciphertext only, safe to hand to any sink."""

    key: ContentKey
    seq: int
    ciphertext: bytes  # nonce + XChaCha20-Poly1305 ciphertext + tag
    regions: int


class Sealer:
    """Seals the original pixels of masked regions for one camera."""

    def __init__(self, cfg: EscrowConfig, public: PublicKey | None = None) -> None:
        self.cfg = cfg
        self.public = public or load_public(cfg.public_key_file)
        self.fingerprint = fingerprint(self.public)
        self.labels = frozenset(cfg.labels)
        self._quality = [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality]
        self._lock = threading.Lock()
        self._aead: nacl.secret.Aead
        self._key: ContentKey
        self._seq = 0
        self.rotate()

    def rotate(self) -> ContentKey:
        """A fresh content key from now on (called for every new segment)."""
        raw = nacl.utils.random(nacl.secret.Aead.KEY_SIZE)
        key = ContentKey(nacl.utils.random(KEY_ID_BYTES), SealedBox(self.public).encrypt(raw))
        with self._lock:
            self._aead, self._key, self._seq = nacl.secret.Aead(raw), key, 0
        del raw
        return key

    def seal(
        self, image: np.ndarray, regions: Sequence[Region], index: int, pts: float
    ) -> SealedFrame | None:
        """Encrypt the crops of ``image`` (the unmasked original) under ``regions`` that carry a
        sealed label. None when the frame has none. Zones are never sealed."""
        h, w = image.shape[:2]
        meta: list[dict[str, object]] = []
        blobs: list[bytes] = []
        for r in regions:
            if r.label not in self.labels:
                continue
            x, y, bw, bh = r.box
            x1, y1, x2, y2 = max(0, x), max(0, y), min(w, x + bw), min(h, y + bh)
            if x2 <= x1 or y2 <= y1:
                continue
            # the whole box: greying the corners outside an ellipse made the JPEG larger (the
            # sharp edge costs more than the corners), measured on the shared clips
            ok, jpg = cv2.imencode(".jpg", image[y1:y2, x1:x2], self._quality)
            if not ok:  # pragma: no cover - OpenCV encodes any non-empty uint8 crop
                raise RuntimeError("JPEG encoding of a sealed region failed")
            data = jpg.tobytes()
            meta.append(
                {
                    "box": [x1, y1, x2 - x1, y2 - y1],
                    "shape": r.shape,
                    "label": r.label,
                    "track": r.track_id,
                    "len": len(data),
                }
            )
            blobs.append(data)
        if not meta:
            return None
        head = json.dumps(
            {"index": index, "pts": pts, "size": [w, h], "regions": meta}, separators=(",", ":")
        ).encode()
        plain = struct.pack(">I", len(head)) + head + b"".join(blobs)
        with self._lock:
            key, seq, aead = self._key, self._seq, self._aead
            self._seq += 1
        ct = bytes(aead.encrypt(plain, associated_data(key.key_id, seq)))
        del plain, blobs
        return SealedFrame(key, seq, ct, len(meta))


def open_frame(plain: bytes) -> tuple[dict, list[bytes]]:
    """Split a decrypted frame record into its header and JPEG blobs (used by the reveal)."""
    (n,) = struct.unpack_from(">I", plain, 0)
    head = json.loads(plain[4 : 4 + n])
    blobs, off = [], 4 + n
    for r in head["regions"]:
        blobs.append(plain[off : off + r["len"]])
        off += r["len"]
    return head, blobs
