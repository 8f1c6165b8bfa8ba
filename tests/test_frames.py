"""Rule 1 is structural: only the masker can make the frame type that sinks accept."""

import numpy as np
import pytest

from daemon.frames import Frame, MaskedFrame, claim_masker_key, require_masked


def test_masked_frame_cannot_be_made_without_the_masker_key() -> None:
    with pytest.raises(TypeError):
        MaskedFrame(object(), np.zeros((4, 4, 3), np.uint8), index=0, pts=0.0, captured=0.0)


def test_key_is_handed_out_once() -> None:
    import daemon.mask.masker  # noqa: F401  (the masker claims the key at import)

    with pytest.raises(RuntimeError):
        claim_masker_key()


def test_sinks_refuse_raw_frames() -> None:
    raw = Frame(np.zeros((4, 4, 3), np.uint8), index=0, pts=0.0, captured=0.0)
    with pytest.raises(TypeError):
        require_masked(raw)


def test_frame_repr_has_no_pixels() -> None:
    raw = Frame(np.full((2, 2, 3), 7, np.uint8), index=3, pts=0.1, captured=0.0)
    assert "7" not in repr(raw).replace("index=3", "")
