"""Image perturbations for the robustness part of ``veilcam eval`` (T/AI 110.2 set)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np


def brightness(f: float) -> Callable[[np.ndarray], np.ndarray]:
    def apply(img: np.ndarray) -> np.ndarray:
        return cv2.convertScaleAbs(img, alpha=f, beta=0)

    return apply


def contrast(f: float) -> Callable[[np.ndarray], np.ndarray]:
    def apply(img: np.ndarray) -> np.ndarray:
        mean = float(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).mean())
        return cv2.convertScaleAbs(img, alpha=f, beta=mean * (1 - f))

    return apply


def noise(sigma: float, seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)

    def apply(img: np.ndarray) -> np.ndarray:
        n = rng.normal(0, sigma, img.shape).astype(np.float32)
        return np.clip(img.astype(np.float32) + n, 0, 255).astype(np.uint8)

    return apply


def jpeg(quality: int) -> Callable[[np.ndarray], np.ndarray]:
    def apply(img: np.ndarray) -> np.ndarray:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)

    return apply


PERTURBATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "brightness+30%": brightness(1.3),
    "brightness-30%": brightness(0.7),
    "contrast+30%": contrast(1.3),
    "contrast-30%": contrast(0.7),
    "noise_sigma10": noise(10.0),
    "jpeg_q30": jpeg(30),
}
