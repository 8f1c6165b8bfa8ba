"""Decoding to BGR: colours survive the yuv420p -> BGR path and the libswscale fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.media.decode import VideoReader
from tests._live import write_clip

PATCHES = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (40, 200, 230), (128, 128, 128), (20, 20, 20)]


def _clip(path: Path, pix_fmt: str) -> np.ndarray:
    """Six flat colour patches, two frames, lossless-ish; returns the BGR picture written."""
    img = np.zeros((96, 192, 3), np.uint8)
    for k, bgr in enumerate(PATCHES):
        img[(k // 3) * 48 : (k // 3 + 1) * 48, (k % 3) * 64 : (k % 3 + 1) * 64] = bgr
    write_clip(path, [img, img], 10, pix_fmt, crf=0)
    return img


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv444p"])
def test_decoded_colours_match_what_was_encoded(tmp_path: Path, pix_fmt: str) -> None:
    path = tmp_path / f"{pix_fmt}.mp4"
    want = _clip(path, pix_fmt)
    with VideoReader(path) as r:
        frames = [f.image for f in r.frames()]
    assert len(frames) == 2 and frames[0].shape == want.shape and frames[0].dtype == np.uint8
    for k in range(len(PATCHES)):
        y, x = (k // 3) * 48 + 16, (k % 3) * 64 + 16
        got = frames[0][y : y + 16, x : x + 32].reshape(-1, 3).mean(axis=0)
        assert np.abs(got - want[y, x]).max() <= 8, (PATCHES[k], got)


def test_queued_frames_keep_yuv_planes_and_give_the_same_bgr(tmp_path: Path) -> None:
    """Sources queue decoded video as YUV 4:2:0 (half the bytes of BGR while frames wait for
    detection); the BGR the detector and masker get is the same as decoding straight to BGR."""
    from daemon.frames import Frame

    path = tmp_path / "c.mp4"
    _clip(path, "yuv420p")
    with VideoReader(path) as r:
        direct = [f.image for f in r.frames()]
    with VideoReader(path) as r:
        planar = [Frame(f.image, f.index, f.pts, 0.0, f.layout) for f in r.frames(yuv=True)]
    assert [f.layout for f in planar] == ["i420", "i420"]
    for f, bgr in zip(planar, direct, strict=True):
        assert (f.width, f.height) == (192, 96)
        assert f.pixels.nbytes * 2 == bgr.nbytes
        assert np.array_equal(f.image, bgr)
        copy = f.bgr_copy()
        copy[:] = 0  # writable and not shared with the queued frame
        assert np.array_equal(f.image, bgr)


# -- the Pi 4's hardware decoder (camera.decoder) ---------------------------------------------
# No Pi here: the path a hardware decoder takes (its own codec context fed the demuxed packets)
# is run with FFmpeg's software H.264 decoder by name, and must give what the stream's own
# decoder gives; the hardware decoder itself does not open on this machine, which is the
# fallback an owner's non-Pi-4 board gets.


def test_a_decoder_of_its_own_gives_the_same_frames_and_times(data_dir: Path) -> None:
    clip = data_dir / "videos" / "facenet-pytorch_video.mp4"  # 1080p H.264, 105 frames
    with VideoReader(clip) as r:
        own = [(f.pts, f.layout, f.image[::5, ::5].copy()) for f in r.frames(yuv=True)]
    with VideoReader(clip, decoder="h264") as r:
        assert r.decoder == "h264"
        named = [(f.pts, f.layout, f.image[::5, ::5].copy()) for f in r.frames(yuv=True)]
    assert len(named) == len(own) == 105
    for (pa, la, ia), (pb, lb, ib) in zip(own, named, strict=True):
        assert pa == pb and la == lb == "i420"
        assert np.array_equal(ia, ib)


def test_auto_decodes_in_software_where_the_hardware_decoder_does_not_open(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from daemon.media import decode

    clip = data_dir / "videos" / "intel_asl_gestures" / "again.mkv"
    with VideoReader(clip, decoder="auto") as r:
        assert r.decoder is None  # no /dev/video10 here: software, silently
    monkeypatch.setattr(decode, "hardware_decoder_available", lambda: True)  # a board that
    with VideoReader(clip, decoder="auto") as r:  # has the device, but it does not open
        assert r.decoder is None
        assert sum(1 for _ in r.frames()) == 77
    assert any("decoding in software" in m.getMessage() for m in caplog.records)


def test_an_explicit_hardware_decoder_that_does_not_open_is_a_clear_source_error(
    data_dir: Path,
) -> None:
    from daemon.capture.sources import FileSource, SourceError

    clip = data_dir / "videos" / "intel_asl_gestures" / "again.mkv"
    src = FileSource(str(clip), loop=False, realtime=False, decoder="h264_v4l2m2m")
    with pytest.raises(SourceError, match="decoder h264_v4l2m2m does not open"):
        src.open()


def test_auto_falls_back_to_software_when_the_hardware_decoder_fails_on_the_first_packet(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A decoder that opens but rejects the stream (a profile the Pi 4's cannot do) costs no
    frame: the packet it failed on is decoded again in software, and so is the rest."""
    import av

    clip = data_dir / "videos" / "intel_asl_gestures" / "again.mkv"
    with VideoReader(clip) as r:
        want = [(f.pts, f.image.copy()) for f in r.frames(yuv=True)]

    class Rejecting:
        def decode(self, packet: object) -> list:
            raise av.error.InvalidDataError(1094995529, "rejected")

    with VideoReader(clip, decoder="h264") as r:
        r._auto, r._ctx = True, Rejecting()  # as "auto" would have opened it
        got = [(f.pts, f.image.copy()) for f in r.frames(yuv=True)]
        assert r.decoder is None
    assert len(got) == len(want) == 77
    for (pa, a), (pb, b) in zip(got, want, strict=True):
        assert pa == pb and np.array_equal(a, b)
    assert any("decoding in software" in m.getMessage() for m in caplog.records)
