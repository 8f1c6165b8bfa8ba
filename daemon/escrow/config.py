"""Config of the ``escrow`` section (off by default).

With escrow on, the original pixels of each masked face (and person, if listed) are sealed to
the owner's X25519 public key beside each segment. A missing or malformed key is a config
error: the daemon never records while escrow is asked for but cannot seal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from daemon.escrow import PRIVATE_MARKER
from daemon.schema import StrictModel

DEFAULT_KEY = Path("/etc/veilcam/escrow.pub")


class EscrowConfig(StrictModel):
    enabled: bool = Field(False, description="seal masked regions' originals to the key")
    public_key_file: Path = Field(DEFAULT_KEY, description="the owner's key from `veilcam keygen`")
    labels: tuple[Literal["face", "person"], ...] = Field(
        ("face",), min_length=1, max_length=2, description="which masked regions are sealed"
    )
    # 22: with superfast the crowd's revealed faces keep >= 35 dB at the 5th percentile (720p:
    # 35.2 dB; at 23, 34.6) and one person's sealed bytes stay 23 % of the video (target 25 %)
    crf: int | None = Field(
        22,
        ge=10,
        le=30,
        description="H.264 quality of the sealed pixels (lower is better); null: recording.crf",
    )
    # superfast (bench/escrow_storage.py, bench/pipeline.py --escrow; 720p, crf 23): sealed bytes
    # 34 -> 21 % of the video for one person, 88 -> 49 % for the crowd, for 1 dB less at the
    # revealed faces' 5th percentile and +1 CPU-ms a frame (one person) to +2 (crowd); veryfast
    # saves little more (21 %, 44 %) for another 0.5 dB and 1.5 CPU-ms
    preset: Literal["ultrafast", "superfast", "veryfast"] = Field(
        "superfast", description="x264 preset of the sealed pixels (slower: fewer bytes, more CPU)"
    )

    @field_validator("public_key_file", mode="after")
    @classmethod
    def _usable_key(cls, value: Path, info: ValidationInfo) -> Path:
        if not info.data.get("enabled"):
            if not value.is_file():
                return value
            try:  # off, but a private key named here would still be a private key on the box
                with open(value, "rb") as f:
                    head = f.read(4096)
            except OSError:
                return value
            if PRIVATE_MARKER.encode() in head:
                raise ValueError(f"{value} is a PRIVATE key: it must never be on the box")
            return value
        from daemon.escrow.keys import KeyFileError, load_public

        try:
            load_public(value)
        except KeyFileError as exc:
            raise ValueError(str(exc)) from None
        return value
