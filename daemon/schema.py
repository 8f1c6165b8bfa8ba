"""Base class for every config section: unknown keys are errors (as in Frigate's config)."""

import re
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

# C0/C1 controls, DEL and the Unicode line/paragraph separators: a path or name holding one can
# end a line in a file generated from the config (a systemd drop-in, the nftables ruleset) and
# add lines of its own there (e.g. ``ExecStartPre=+...`` running as root).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_text(value: Any) -> None:
    """Raise ValueError if a string or path (or a list/tuple of them) holds a control character."""
    if isinstance(value, str | PurePath):
        m = _CONTROL.search(str(value))
        if m:
            raise ValueError(f"control character U+{ord(m.group()):04X} is not allowed")
    elif isinstance(value, list | tuple):
        for item in value:
            check_text(item)


class StrictModel(BaseModel):
    """A config section that rejects unknown keys, infinities/NaN and control characters in
    text, and is immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        check_text(value)
        return value
