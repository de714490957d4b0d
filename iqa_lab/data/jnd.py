"""JNDMix (seed abstract: JND noise mixing for NR-IQA): just-noticeable-difference noise added to
training images, so their labels still hold.

The JND profile is the pixel-domain nonlinear additivity model for masking (NAMM) of Yang et al.
(IEEE TCSVT 2005), built on Chou & Li (IEEE TCSVT 1995), on the luminance (BT.601 luma) in grey
levels 0..255:

- luminance adaptation (Chou & Li): background luminance ``bg`` = the 5x5 weighted mean
  ``BACKGROUND`` (centre excluded, sum 32); ``LA = 17 (1 - sqrt(bg / 127)) + 3`` for
  ``bg <= 127``, ``3 / 128 (bg - 127) + 3`` above;
- texture (contrast) masking (Yang et al.): ``TM = eta * G * W_e`` with ``G`` the largest absolute
  response of Chou & Li's four 5x5 directional operators ``GRADIENTS`` (divided by 16),
  ``eta = 0.117``, and ``W_e`` the edge weight: Canny edges (thresholds from the image's median:
  0.66 and 1.33 times it), dilated by a 3x3 square, set to 0.1 (edges stay protected: noise there
  is visible), 1 elsewhere, then smoothed by a 7x7 Gaussian of sigma 0.8;
- NAMM: ``JND = LA + TM - C * min(LA, TM)`` with the overlap ``C = 0.3``.

Borders are reflected (OpenCV's default), so a flat image has a flat profile. The same luma
profile bounds every colour channel (the abstract names no colour model; a channel's change then
never exceeds the luma threshold).

``JNDMix`` (an albumentations ``ImageOnlyTransform``, enabled as
``data.transforms.train.augment: {JNDMix: {...}}``, see ``conf/augment/jndmix.yaml``) draws, with
probability ``p``, noise ``strength * JND * r`` per pixel and channel, ``r`` a random sign
(``noise=sign``, the strongest noise the profile allows at ``strength=1``) or uniform in [-1, 1]
(``noise=uniform``), adds it to the uint8 image, rounds and clips. The label is never touched.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np

from iqa_lab.errors import ConfigError

BACKGROUND = np.array(
    [
        [1, 1, 1, 1, 1],
        [1, 2, 2, 2, 1],
        [1, 2, 0, 2, 1],
        [1, 2, 2, 2, 1],
        [1, 1, 1, 1, 1],
    ],
    dtype=np.float32,
)
GRADIENTS = np.array(
    [
        [[0, 0, 0, 0, 0], [1, 3, 8, 3, 1], [0, 0, 0, 0, 0], [-1, -3, -8, -3, -1], [0, 0, 0, 0, 0]],
        [[0, 0, 1, 0, 0], [0, 8, 3, 0, 0], [1, 3, 0, -3, -1], [0, 0, -3, -8, 0], [0, 0, -1, 0, 0]],
        [[0, 0, 1, 0, 0], [0, 0, 3, 8, 0], [-1, -3, 0, 3, 1], [0, -8, -3, 0, 0], [0, 0, -1, 0, 0]],
        [[0, 1, 0, -1, 0], [0, 3, 0, -3, 0], [0, 8, 0, -8, 0], [0, 3, 0, -3, 0], [0, 1, 0, -1, 0]],
    ],
    dtype=np.float32,
)
ETA = 0.117  # texture-masking gain (Yang et al. 2005)
OVERLAP = 0.3  # NAMM's C: how much the two maskings overlap
EDGE_WEIGHT = 0.1
NOISES = ("sign", "uniform")


def luma(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of an RGB ``(H, W, 3)`` image, or a grey ``(H, W)`` one, as float32 0..255."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[..., 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    raise ValueError(f"JND profile: expected an (H, W) or (H, W, 3) image, got {image.shape}")


def _filter(plane: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlation with reflected borders (cv2.filter2D does not flip the kernel)."""
    return cv2.filter2D(plane, cv2.CV_32F, kernel, borderType=cv2.BORDER_REFLECT_101)


def background_luminance(lum: np.ndarray) -> np.ndarray:
    return _filter(lum, BACKGROUND / 32.0)


def luminance_adaptation(bg: np.ndarray) -> np.ndarray:
    """Chou & Li's visibility threshold of a background luminance (grey levels)."""
    bg = np.asarray(bg, dtype=np.float32)
    dark = 17.0 * (1.0 - np.sqrt(np.clip(bg, 0, None) / 127.0)) + 3.0
    bright = 3.0 / 128.0 * (bg - 127.0) + 3.0
    return np.where(bg <= 127, dark, bright).astype(np.float32)


def max_gradient(lum: np.ndarray) -> np.ndarray:
    """The largest absolute directional difference around each pixel (Chou & Li's ``mg``)."""
    return np.max([np.abs(_filter(lum, g / 16.0)) for g in GRADIENTS], axis=0)


def edge_weight(lum: np.ndarray) -> np.ndarray:
    """0.1 on (dilated) Canny edges, 1 elsewhere, Gaussian-smoothed (7x7, sigma 0.8)."""
    grey = np.clip(np.rint(lum), 0, 255).astype(np.uint8)
    median = float(np.median(grey))
    edges = cv2.Canny(grey, int(0.66 * median), int(1.33 * median)) > 0
    edges = cv2.dilate(edges.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    weight = np.where(edges, EDGE_WEIGHT, 1.0).astype(np.float32)
    return cv2.GaussianBlur(weight, (7, 7), 0.8, borderType=cv2.BORDER_REFLECT_101)


def jnd_profile(image: np.ndarray) -> np.ndarray:
    """The NAMM JND threshold (grey levels) of every pixel: ``(H, W)`` float32."""
    lum = luma(image)
    la = luminance_adaptation(background_luminance(lum))
    tm = ETA * max_gradient(lum) * edge_weight(lum)
    return (la + tm - OVERLAP * np.minimum(la, tm)).astype(np.float32)


def jnd_noise(
    image: np.ndarray, strength: float, noise: str, rng: np.random.Generator
) -> np.ndarray:
    """``image`` (uint8) plus ``strength * JND * r`` per pixel and channel, rounded and clipped."""
    bound = strength * jnd_profile(image)
    if image.ndim == 3:
        bound = bound[..., None]
    if noise == "sign":
        r = rng.choice(np.array([-1.0, 1.0], np.float32), size=image.shape)
    else:
        r = rng.uniform(-1.0, 1.0, size=image.shape).astype(np.float32)
    out = image.astype(np.float32) + bound * r
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class JNDMix(A.ImageOnlyTransform):
    """Adds JND-bounded noise (module docstring) to a uint8 image with probability ``p``."""

    def __init__(self, strength: float = 1.0, noise: str = "sign", p: float = 0.5):
        super().__init__(p=p)
        if noise not in NOISES:
            raise ConfigError(f"JNDMix noise must be one of {NOISES}, got '{noise}'")
        if strength < 0:
            raise ConfigError(
                f"JNDMix strength must be >= 0 (a multiple of the JND), got {strength}"
            )
        self.strength = float(strength)
        self.noise = noise

    def get_params(self) -> dict:
        # Drawn from albumentations' seeded generator: set_random_seed makes the noise repeatable.
        return {"seed": int(self.random_generator.integers(2**32))}

    def apply(self, img: np.ndarray, seed: int = 0, **params) -> np.ndarray:
        if img.dtype != np.uint8:
            raise ValueError(
                f"JNDMix works on uint8 images (0..255) before ToFloat, got {img.dtype}; list it "
                f"under data.transforms.train.augment"
            )
        return jnd_noise(img, self.strength, self.noise, np.random.default_rng(seed))

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("strength", "noise")
