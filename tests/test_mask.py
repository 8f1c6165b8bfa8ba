"""The masker: margins, clipping, shapes, zones, strength of every style, obscure."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from daemon.frames import Frame, MaskedFrame, require_masked
from daemon.mask.config import MaskConfig, ZoneConfig
from daemon.mask.masker import Masker, grow
from daemon.regions import Detection


def _frame(img: np.ndarray) -> Frame:
    return Frame(img, index=4, pts=0.16, captured=1.0)


def _noise(h: int = 480, w: int = 640, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _detail(roi: np.ndarray) -> float:
    """High-frequency energy: variance of the Laplacian of the grey image."""
    grey = cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def test_margin_grows_about_the_centre_and_clips_to_the_frame() -> None:
    assert grow((100, 100, 40, 40), 1.5, 640, 480) == (90, 90, 60, 60)
    assert grow((0, 0, 40, 40), 1.5, 640, 480) == (0, 0, 50, 50)
    assert grow((630, 470, 40, 40), 1.3, 640, 480) == (624, 464, 16, 16)
    assert grow((700, 10, 10, 10), 1.3, 640, 480) is None


def test_regions_carry_detector_box_score_shape_and_zones() -> None:
    cfg = MaskConfig(
        shape="box", margin=1.3, zones=[ZoneConfig(name="w", points=[(0, 0), (50, 0), (0, 50)])]
    )
    regs = Masker(cfg).regions([Detection((100, 100, 40, 40), 0.9)], 640, 480)
    face, zone = regs
    assert face.det == (100, 100, 40, 40) and face.score == 0.9 and face.shape == "box"
    assert face.box == (94, 94, 52, 52)
    assert zone.label == "zone" and zone.shape == "polygon" and zone.points[1] == (50, 0)
    j = face.to_json()
    assert j["box"] == [94, 94, 52, 52] and j["det"] == [100, 100, 40, 40]


@pytest.mark.parametrize("style", ["blur", "mosaic", "fill"])
@pytest.mark.parametrize("size", [12, 40, 160, 400])
def test_every_style_removes_the_detail_of_a_face_at_any_size(style: str, size: int) -> None:
    img = _noise()
    m = Masker(MaskConfig(style=style, shape="box", margin=1.0))
    x = y = 20
    out = m.mask(_frame(img), m.regions([Detection((x, y, size, size), 0.9)], 640, 480)).image
    roi = out[y : y + size, x : x + size]
    before = _detail(img[y : y + size, x : x + size])
    assert _detail(roi) < 0.05 * before
    if style == "mosaic":  # at most 6x6 flat cells
        assert len(np.unique(roi.reshape(-1, 3), axis=0)) <= 36
    # outside the region nothing changed
    assert np.array_equal(out[y + size :], img[y + size :])


def test_ellipse_is_inscribed_in_the_box() -> None:
    img = _noise()
    m = Masker(MaskConfig(style="fill", shape="ellipse", margin=1.0, color=(0, 0, 255)))
    out = m.mask(_frame(img), m.regions([(100, 100, 100, 60)], 640, 480)).image
    assert (out[130, 150] == (0, 0, 255)).all()  # centre filled
    assert np.array_equal(out[100, 100], img[100, 100])  # corner of the box untouched
    assert np.array_equal(out[99, 150], img[99, 150])  # just outside


def test_zones_are_always_masked_even_without_faces() -> None:
    img = _noise()
    cfg = MaskConfig(zones=[ZoneConfig(points=[(10, 10), (110, 10), (110, 110), (10, 110)])])
    m = Masker(cfg)
    mf = m.mask(_frame(img), m.regions([], 640, 480))
    assert mf.image[10:110, 10:110].max() == 0
    assert np.array_equal(mf.image[200:], img[200:])
    assert [r.label for r in mf.regions] == ["zone"]


def test_mask_returns_a_read_only_masked_frame_and_leaves_the_input_alone() -> None:
    img = _noise()
    keep = img.copy()
    m = Masker()
    mf = m.mask(_frame(img), m.regions([(50, 50, 80, 80)], 640, 480))
    assert require_masked(mf) is mf and isinstance(mf, MaskedFrame)
    assert (mf.index, mf.pts) == (4, 0.16) and not mf.obscured
    assert np.array_equal(img, keep)
    with pytest.raises(ValueError):
        mf.image[0, 0] = 1


def test_obscure_blacks_out_the_whole_frame() -> None:
    mf = Masker().obscure(_frame(_noise()), "detection-failed")
    assert mf.obscured and mf.reason == "detection-failed" and mf.image.max() == 0


def test_min_score_skips_weak_detections() -> None:
    m = Masker(MaskConfig(min_score=0.5))
    assert m.regions([Detection((1, 1, 9, 9), 0.4)], 64, 64) == []


@pytest.mark.parametrize(
    ("shape", "inner"), [("ellipse", "box"), ("ellipse", "ellipse"), ("box", "box")]
)
def test_nested_regions_drawn_once_still_hide_every_pixel_of_every_region(
    shape: str, inner: str
) -> None:
    """Regions inside another are drawn once (a speed-up in crowds); every pixel of every
    region's shape must still change, including boxes that stick out of a larger ellipse."""
    from daemon.evaluate.coverage import region_mask
    from daemon.mask.masker import _inside_another
    from daemon.regions import Region

    rng = np.random.default_rng(7)
    regions = []
    for _ in range(40):
        x, y = int(rng.integers(0, 500)), int(rng.integers(0, 340))
        s = int(rng.integers(30, 140))
        regions.append(Region((x, y, s, s), "face", shape))
        for _ in range(3):  # nested or overlapping smaller ones: held and new tracks of a face
            dx, dy, ds = (int(v) for v in rng.integers(0, max(2, s // 2), 3))
            regions.append(Region((x + dx, y + dy, max(8, s - ds), max(8, s - ds)), "face", inner))
    masker = Masker(MaskConfig(style="blur"))
    regions = masker.regions(regions, 640, 480)  # clipped to the frame, as the pipeline does
    skipped = _inside_another(regions)
    assert 0 < sum(skipped) < len(regions)
    img = _noise()
    out = masker.apply(img, regions)
    must = region_mask(regions, 640, 480)
    unchanged = must & ~(out != img).any(axis=2)
    assert unchanged.sum() == 0, unchanged.sum()  # noise: a hidden pixel always changes


def test_only_boxes_wholly_inside_another_shape_are_skipped() -> None:
    from daemon.mask.masker import _inside_another
    from daemon.regions import Region

    big = Region((100, 100, 200, 200), "face", "ellipse")
    centre = Region((170, 170, 60, 60), "face", "ellipse")  # well inside the ellipse
    corner = Region((102, 102, 40, 40), "face", "ellipse")  # inside the box, not the ellipse
    twin_a, twin_b = (
        Region((400, 50, 50, 50), "face", "box"),
        Region((400, 50, 50, 50), "face", "box"),
    )
    zone = Region(
        (150, 150, 20, 20), "zone", "polygon", points=((150, 150), (170, 150), (160, 170))
    )
    assert _inside_another([big, centre, corner, twin_a, twin_b, zone]) == [
        False, True, False, False, True, False,
    ]  # fmt: skip
