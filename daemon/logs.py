"""Structured logging: journal fields under systemd, ``key=value`` lines on stderr otherwise.

Log calls pass their fields with :func:`fields`, e.g.
``log.warning("source lost", extra=fields(source=url, retry_in_s=4))``. Fields must be small
scalars; never pass frames or pixel data (``_safe`` refuses arrays and bytes). Credentials in
URLs (``rtsp://user:pass@cam``) are replaced by ``***`` in messages and fields alike: logs are
readable by more people than the config.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

_FIELDS = "veilcam_fields"
_USERINFO = re.compile(r"(://)[^/@\s]*@")


def redact(text: str) -> str:
    """``text`` with any URL's ``user:password@`` replaced by ``***@``."""
    return _USERINFO.sub(r"\1***@", text)


def fields(**kv: Any) -> dict[str, dict[str, Any]]:
    """Structured fields for a log call's ``extra=``."""
    return {_FIELDS: kv}


def _safe(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview) or hasattr(value, "__array__"):
        return f"<{type(value).__name__} withheld>"
    text = redact(str(value))
    return text if len(text) <= 256 else text[:253] + "..."


class KeyValueFormatter(logging.Formatter):
    """``LEVEL logger: message key=value ...`` for stderr."""

    def format(self, record: logging.LogRecord) -> str:
        base = f"{record.levelname:<7} {record.name}: {redact(record.getMessage())}"
        kv = getattr(record, _FIELDS, None) or {}
        if kv:
            base += " " + " ".join(f"{k}={_safe(v)}" for k, v in kv.items())
        if record.exc_info:
            base += "\n" + redact(self.formatException(record.exc_info))
        return base


class JournalFieldsHandler(logging.Handler):
    """Send records to the journal with fields as ``VEILCAM_<KEY>=value``."""

    def __init__(self) -> None:
        super().__init__()
        from systemd import journal  # only under systemd

        self._send = journal.send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            kv = getattr(record, _FIELDS, None) or {}
            extra = {f"VEILCAM_{k.upper()}": _safe(v) for k, v in kv.items()}
            msg = redact(record.getMessage())
            if record.exc_info:
                msg += "\n" + redact(logging.Formatter().formatException(record.exc_info))
            priority = {10: 7, 20: 6, 30: 4, 40: 3, 50: 2}.get(record.levelno, 6)
            self._send(
                msg,
                PRIORITY=str(priority),
                LOGGER=record.name,
                SYSLOG_IDENTIFIER="veilcam",
                **extra,
            )
        except Exception:  # logging must never take the pipeline down
            self.handleError(record)


def under_systemd() -> bool:
    """True when stderr is connected to the journal (systemd sets JOURNAL_STREAM)."""
    return bool(os.environ.get("JOURNAL_STREAM"))


def setup(level: str = "info") -> None:
    """Configure the root logger once, for the journal or for stderr."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler
    if under_systemd():
        try:
            handler = JournalFieldsHandler()
        except ImportError:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(KeyValueFormatter())
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(KeyValueFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
