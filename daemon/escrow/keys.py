"""Key files of escrow: the owner's X25519 pair, the private half protected by a passphrase.

The public key file is text, one line ``VEILCAM-ESCROW-PUBLIC-KEY-1 <base64>``, so that it can be
pasted over SSH. The private key file is armoured text holding the X25519 secret encrypted with
a key derived from the passphrase (libsodium's Argon2id and secretbox, through PyNaCl). Nothing
here is hand-made crypto: it only chooses formats around libsodium's primitives.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils
from nacl.public import PrivateKey, PublicKey

from daemon.escrow import PRIVATE_MARKER

PUBLIC_TAG = "VEILCAM-ESCROW-PUBLIC-KEY-1"
PRIVATE_BEGIN = "-----BEGIN VEILCAM ESCROW PRIVATE KEY-----"
PRIVATE_END = "-----END VEILCAM ESCROW PRIVATE KEY-----"
_A2 = nacl.pwhash.argon2id
KDF_LEVELS = {
    "interactive": (_A2.OPSLIMIT_INTERACTIVE, _A2.MEMLIMIT_INTERACTIVE),
    "moderate": (_A2.OPSLIMIT_MODERATE, _A2.MEMLIMIT_MODERATE),
    "sensitive": (_A2.OPSLIMIT_SENSITIVE, _A2.MEMLIMIT_SENSITIVE),
}
_MAX_KEY_FILE = 64 * 1024


class KeyFileError(Exception):
    """A key file that cannot be used: missing, malformed, the wrong half, a wrong passphrase."""


def fingerprint(public: PublicKey | bytes) -> str:
    """``SHA256:`` and the base64 of the key's SHA-256, as OpenSSH prints fingerprints."""
    raw = bytes(public)
    digest = base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _read(path: Path) -> str:
    if path.exists() and not path.is_file():
        raise KeyFileError(f"{path} is not a regular file")
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_KEY_FILE + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_KEY_FILE:
        raise KeyFileError(f"{path} is too large to be a key file")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path} is not a veilcam key file (not text)") from None


def public_text(public: PublicKey) -> str:
    return (
        f"# veilcam escrow public key (X25519), fingerprint {fingerprint(public)}\n"
        f"{PUBLIC_TAG} {base64.b64encode(bytes(public)).decode()}\n"
    )


def parse_public(text: str, where: str = "key") -> PublicKey:
    if PRIVATE_MARKER in text:
        raise KeyFileError(
            f"{where} is a PRIVATE key: it must never be on the box; give the public key "
            "(escrow.pub) that `veilcam keygen` wrote beside it"
        )
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if len(lines) != 1 or not lines[0].startswith(PUBLIC_TAG + " "):
        raise KeyFileError(f"{where} is not a veilcam escrow public key (from `veilcam keygen`)")
    try:
        raw = base64.b64decode(lines[0].split(" ", 1)[1], validate=True)
    except ValueError:
        raise KeyFileError(f"{where}: the public key is not valid base64") from None
    if len(raw) != PublicKey.SIZE:
        raise KeyFileError(f"{where}: the public key has {len(raw)} bytes, not {PublicKey.SIZE}")
    return PublicKey(raw)


def load_public(path: str | Path) -> PublicKey:
    p = Path(path)
    return parse_public(_read(p), str(p))


@dataclass(frozen=True)
class KeyPair:
    public_file: Path
    private_file: Path
    fingerprint: str


def private_text(private: PrivateKey, passphrase: bytes, level: str = "moderate") -> str:
    """The armoured, passphrase-protected form of ``private``."""
    if not passphrase:
        raise KeyFileError("an empty passphrase would leave the private key unprotected")
    ops, mem = KDF_LEVELS[level]
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    kek = nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase, salt, ops, mem)
    box = nacl.secret.SecretBox(kek).encrypt(bytes(private))
    body = json.dumps(
        {
            "kdf": "argon2id",
            "opslimit": ops,
            "memlimit": mem,
            "salt": base64.b64encode(salt).decode(),
            "secretbox": base64.b64encode(bytes(box)).decode(),
            "fingerprint": fingerprint(private.public_key),
        },
        separators=(",", ":"),
    )
    wrapped = base64.encodebytes(body.encode()).decode()
    return f"{PRIVATE_BEGIN}\n{wrapped}{PRIVATE_END}\n"


def load_private(path: str | Path, passphrase: bytes) -> PrivateKey:
    p = Path(path)
    text = _read(p)
    if PRIVATE_BEGIN not in text or PRIVATE_END not in text:
        raise KeyFileError(f"{p} is not a veilcam escrow private key")
    inner = text.split(PRIVATE_BEGIN, 1)[1].split(PRIVATE_END, 1)[0]
    try:
        body = json.loads(base64.b64decode("".join(inner.split()), validate=True))
        salt = base64.b64decode(body["salt"])
        sealed = base64.b64decode(body["secretbox"])
        ops, mem = int(body["opslimit"]), int(body["memlimit"])
    except (ValueError, KeyError, TypeError):
        raise KeyFileError(f"{p}: the private key file is damaged") from None
    try:
        kek = nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase, salt, ops, mem)
        raw = nacl.secret.SecretBox(kek).decrypt(sealed)
    except (nacl.exceptions.CryptoError, ValueError):
        raise KeyFileError(f"{p}: wrong passphrase (or a damaged key file)") from None
    return PrivateKey(raw)


def generate(out_dir: str | Path, passphrase: bytes, level: str = "moderate") -> KeyPair:
    """Write ``escrow.pub`` and ``escrow.key`` (mode 0600) into ``out_dir``; never overwrite."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pub_file, key_file = out / "escrow.pub", out / "escrow.key"
    for f in (pub_file, key_file):
        if f.exists():
            raise KeyFileError(f"{f} exists; not overwriting a key (move it away first)")
    private = PrivateKey.generate()
    armoured = private_text(private, passphrase, level)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(armoured)
    pub_file.write_text(public_text(private.public_key))
    return KeyPair(pub_file, key_file, fingerprint(private.public_key))


def private_keys_in(directory: str | Path, limit: int = 200) -> list[Path]:
    """Files under ``directory`` (two levels) that hold an escrow private key."""
    found: list[Path] = []
    d = Path(directory)
    try:
        candidates = [*d.glob("*"), *d.glob("*/*")][:limit]
    except OSError:
        return found
    for f in candidates:
        try:
            if not f.is_file() or f.stat().st_size > _MAX_KEY_FILE:
                continue
            if PRIVATE_MARKER.encode() in f.read_bytes():
                found.append(f)
        except OSError:
            continue
    return found
