"""Image perturbations for the robustness part of ``veilcam eval``.

Two groups, each with fixed parameters so that figures compare across runs and machines:

* the T/AI 110.2 §6.2 f set: brightness, contrast and saturation ±30 %, gaussian noise, JPEG;
* a home camera's own conditions (``HOME_CAMERA``): night IR, a dim room, motion blur, defocus
  and backlight. A photo at brightness −30 % is still a bright photo; these are what a camera
  records at night, indoors and against a window, and where an int8 detector loses faces.

``HOME_CAMERA`` holds factories (a fresh seeded generator per use) so that copies of clips can
later be degraded exactly as the photos are. Everything happens in memory (the JPEG step is an
encode/decode round trip); nothing is written. Every random draw is seeded.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Perturbation = Callable[[np.ndarray], np.ndarray]


def brightness(f: float) -> Perturbation:
    def apply(img: np.ndarray) -> np.ndarray:
        return cv2.convertScaleAbs(img, alpha=f, beta=0)

    return apply


def contrast(f: float) -> Perturbation:
    def apply(img: np.ndarray) -> np.ndarray:
        mean = float(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).mean())
        return cv2.convertScaleAbs(img, alpha=f, beta=mean * (1 - f))

    return apply


def saturation(f: float) -> Perturbation:
    """Scale HSV saturation by ``f`` (T/AI 110.2 §6.2 f lists it beside brightness)."""

    def apply(img: np.ndarray) -> np.ndarray:
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        hsv[..., 1] = cv2.convertScaleAbs(hsv[..., 1], alpha=f, beta=0)
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)

    return apply


def _add_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    n = rng.normal(0, sigma, img.shape).astype(np.float32)
    return np.clip(img.astype(np.float32) + n, 0, 255).astype(np.uint8)


def noise(sigma: float, seed: int = 0) -> Perturbation:
    rng = np.random.default_rng(seed)

    def apply(img: np.ndarray) -> np.ndarray:
        return _add_noise(img, sigma, rng)

    return apply


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def jpeg(quality: int) -> Perturbation:
    def apply(img: np.ndarray) -> np.ndarray:
        return _jpeg(img, quality)

    return apply


def _tone(img: np.ndarray, gain: float, gamma: float) -> np.ndarray:
    """Exposure ``gain`` after a ``gamma`` > 1 that sinks the mid-tones (a short exposure)."""
    lut = np.clip(255.0 * gain * (np.arange(256) / 255.0) ** gamma, 0, 255).astype(np.uint8)
    return cv2.LUT(img, lut)


# Night IR: an 850 nm illuminator gives a monochrome picture whose faces sit in the dark
# mid-tones (gain 0.45 after gamma 1.5: a mid-grey 128 becomes 41, white 115), with the sensor
# noise of high analogue gain (sigma 7 levels on luma) and the coarse compression of a
# low-bitrate night stream (JPEG quality 40 stands in for it).
NIGHT_IR = {"gain": 0.45, "gamma": 1.5, "noise_sigma": 7.0, "jpeg_quality": 40}
# A dim room, in colour: mid-grey to 54, chroma and luma noise sigma 5.
LOW_LIGHT = {"gain": 0.5, "gamma": 1.3, "noise_sigma": 5.0}
# Motion: a person crossing the frame at walking pace in a 1/30 s exposure smears ~9 px at
# WIDER's resolution; a horizontal line kernel.
MOTION_BLUR_PX = 9
# Defocus: a disc of radius 3 px (a focus set for the far wall).
DEFOCUS_RADIUS_PX = 3
# Backlight: exposed for a bright window, the subject is underexposed (gain 0.4, gamma 1.4)
# under a veiling glare that lifts the blacks, strongest at the top of the frame.
BACKLIGHT = {"gain": 0.4, "gamma": 1.4, "glare_top": 90.0, "glare_bottom": 30.0}


def night_ir(seed: int = 0) -> Perturbation:
    rng = np.random.default_rng(seed)
    p = NIGHT_IR

    def apply(img: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        dark = _tone(grey, p["gain"], p["gamma"])
        noisy = _add_noise(dark, p["noise_sigma"], rng)
        return _jpeg(cv2.cvtColor(noisy, cv2.COLOR_GRAY2BGR), int(p["jpeg_quality"]))

    return apply


def low_light(seed: int = 0) -> Perturbation:
    rng = np.random.default_rng(seed)
    p = LOW_LIGHT

    def apply(img: np.ndarray) -> np.ndarray:
        return _add_noise(_tone(img, p["gain"], p["gamma"]), p["noise_sigma"], rng)

    return apply


def motion_blur(length: int = MOTION_BLUR_PX) -> Perturbation:
    kernel = np.full((1, length), 1.0 / length, np.float32)

    def apply(img: np.ndarray) -> np.ndarray:
        return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)

    return apply


def defocus(radius: int = DEFOCUS_RADIUS_PX) -> Perturbation:
    size = 2 * radius + 1
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)).astype(np.float32)
    disc /= disc.sum()

    def apply(img: np.ndarray) -> np.ndarray:
        return cv2.filter2D(img, -1, disc, borderType=cv2.BORDER_REFLECT)

    return apply


def backlight() -> Perturbation:
    p = BACKLIGHT

    def apply(img: np.ndarray) -> np.ndarray:
        h = img.shape[0]
        dark = _tone(img, p["gain"], p["gamma"]).astype(np.float32)
        glare = np.linspace(p["glare_top"], p["glare_bottom"], h, dtype=np.float32)
        return np.clip(dark + glare[:, None, None], 0, 255).astype(np.uint8)

    return apply


PERTURBATIONS: dict[str, Perturbation] = {
    "brightness+30%": brightness(1.3),
    "brightness-30%": brightness(0.7),
    "contrast+30%": contrast(1.3),
    "contrast-30%": contrast(0.7),
    "saturation+30%": saturation(1.3),
    "saturation-30%": saturation(0.7),
    "noise_sigma10": noise(10.0),
    "jpeg_q30": jpeg(30),
}

# name -> factory (a fresh, seeded generator for each use, e.g. each clip)
HOME_CAMERA: dict[str, Callable[[], Perturbation]] = {
    "night_ir": night_ir,
    "low_light": low_light,
    "motion_blur": motion_blur,
    "defocus": defocus,
    "backlight": backlight,
}
PERTURBATIONS.update({name: make() for name, make in HOME_CAMERA.items()})
