"""KADID-10k-style distortions at five levels (level 1 mildest, 5 strongest).

Names follow KADID-10k's 25 types (Lin et al., 2019); 23 of them are here. albumentations does the
work where it has the operation; the rest are short numpy/OpenCV/Pillow functions. Every call is
deterministic for a given ``seed``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
from PIL import Image

LEVELS = 5


@dataclass(frozen=True)
class Distortion:
    """A distortion type: ``apply(image, level, seed)`` on an ``(H, W, 3)`` uint8 image."""

    name: str
    kadid_id: int
    apply: Callable[[np.ndarray, int, int], np.ndarray]


def _albu(make: Callable[[float], A.BasicTransform], params: tuple) -> Callable:
    """A distortion from one albumentations transform built with the level's parameter."""

    def apply(image: np.ndarray, level: int, seed: int) -> np.ndarray:
        pipeline = A.Compose([make(params[level - 1])], seed=seed)
        return pipeline(image=image)["image"]

    return apply


def _color_diffusion(image, level, seed):
    sigma = (1, 3, 6, 8, 12)[level - 1]
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    for c in (1, 2):
        lab[..., c] = cv2.GaussianBlur(lab[..., c], (0, 0), sigma)
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def _color_shift(image, level, seed):
    shift = (1, 3, 6, 8, 12)[level - 1]
    angle = np.random.default_rng(seed).uniform(0, 2 * np.pi)
    dx, dy = np.rint(shift * np.cos(angle)).astype(int), np.rint(shift * np.sin(angle)).astype(int)
    out = image.copy()
    out[..., 1] = np.roll(image[..., 1], (dy, dx), axis=(0, 1))
    return out


def _color_quantization(image, level, seed):
    colors = (64, 48, 32, 16, 8)[level - 1]
    quantized = Image.fromarray(image).quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    return np.asarray(quantized.convert("RGB"))


def _jpeg2000(image, level, seed):
    ratio = (16, 32, 64, 128, 256)[level - 1]
    # Below a few hundred bytes OpenJPEG writes an empty code stream, which decodes to flat grey
    # whatever the photo (a 128 px crop at 1:256): every photo's crop would become one identical
    # image with different labels. Compress as hard as the encoder still can instead.
    while True:
        compressed = _jpeg2000_at(image, ratio)
        if ratio <= 2 or compressed.min() < compressed.max() or image.min() == image.max():
            return compressed
        ratio *= 0.8


def _jpeg2000_at(image: np.ndarray, ratio: float) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(
        buffer, format="JPEG2000", quality_mode="rates", quality_layers=[ratio], irreversible=True
    )
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _white_noise_color(image, level, seed):
    sigma = (2, 4, 8, 14, 22)[level - 1]
    ycc = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    noise = np.random.default_rng(seed).normal(0, sigma, ycc.shape[:2] + (2,))
    ycc[..., 1:] += noise
    return cv2.cvtColor(np.clip(ycc, 0, 255).astype(np.uint8), cv2.COLOR_YCrCb2RGB)


def _jitter(image, level, seed):
    amount = (0.5, 1.0, 2.0, 3.0, 4.5)[level - 1]
    h, w = image.shape[:2]
    rng = np.random.default_rng(seed)
    grid_y, grid_x = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x = grid_x + rng.uniform(-amount, amount, (h, w)).astype(np.float32)
    map_y = grid_y + rng.uniform(-amount, amount, (h, w)).astype(np.float32)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _tone_curve(gamma_pct: tuple) -> Callable:
    return _albu(lambda g: A.RandomGamma(gamma_limit=(g, g), p=1.0), gamma_pct)


_NEAREST = {"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_NEAREST}

DISTORTIONS: dict[str, Distortion] = {
    d.name: d
    for d in [
        Distortion(
            "gaussian_blur",
            1,
            _albu(
                lambda s: A.GaussianBlur(blur_limit=0, sigma_limit=(s, s), p=1.0),
                (0.6, 1.2, 2.0, 3.0, 5.0),
            ),
        ),
        Distortion(
            "lens_blur",
            2,
            _albu(
                lambda r: A.Defocus(radius=(r, r), alias_blur=(0.1, 0.1), p=1.0), (1, 2, 4, 6, 8)
            ),
        ),
        Distortion(
            "motion_blur",
            3,
            _albu(
                lambda k: A.MotionBlur(blur_limit=(k, k), allow_shifted=False, p=1.0),
                (3, 5, 9, 13, 19),
            ),
        ),
        Distortion("color_diffusion", 4, _color_diffusion),
        Distortion("color_shift", 5, _color_shift),
        Distortion("color_quantization", 6, _color_quantization),
        Distortion(
            "color_saturation_1",
            7,
            _albu(
                lambda s: A.HueSaturationValue(
                    hue_shift_limit=0, sat_shift_limit=(s, s), val_shift_limit=0, p=1.0
                ),
                (-30, -60, -90, -130, -180),
            ),
        ),
        Distortion(
            "color_saturation_2",
            8,
            _albu(
                lambda s: A.ColorJitter(
                    brightness=(1, 1), contrast=(1, 1), saturation=(s, s), hue=(0, 0), p=1.0
                ),
                (1.5, 2.0, 2.8, 3.8, 5.0),
            ),
        ),
        Distortion("jpeg2000", 9, _jpeg2000),
        Distortion(
            "jpeg",
            10,
            _albu(lambda q: A.ImageCompression(quality_range=(q, q), p=1.0), (60, 35, 20, 10, 4)),
        ),
        Distortion(
            "white_noise",
            11,
            _albu(lambda s: A.GaussNoise(std_range=(s, s), p=1.0), (0.02, 0.04, 0.07, 0.11, 0.17)),
        ),
        Distortion("white_noise_color_component", 12, _white_noise_color),
        Distortion(
            "impulse_noise",
            13,
            _albu(lambda a: A.SaltAndPepper(amount=(a, a), p=1.0), (0.005, 0.015, 0.03, 0.06, 0.1)),
        ),
        Distortion(
            "multiplicative_noise",
            14,
            _albu(
                lambda s: A.MultiplicativeNoise(multiplier=(1 - s, 1 + s), elementwise=True, p=1.0),
                (0.05, 0.1, 0.2, 0.3, 0.45),
            ),
        ),
        Distortion("brighten", 16, _tone_curve((85, 70, 55, 42, 30))),
        Distortion("darken", 17, _tone_curve((120, 145, 175, 215, 270))),
        Distortion(
            "mean_shift",
            18,
            _albu(
                lambda b: A.RandomBrightnessContrast(
                    brightness_limit=(b, b), contrast_limit=(0, 0), p=1.0
                ),
                (0.04, 0.08, 0.13, 0.19, 0.26),
            ),
        ),
        Distortion("jitter", 19, _jitter),
        Distortion(
            "pixelate",
            21,
            _albu(
                lambda s: A.Downscale(scale_range=(s, s), interpolation_pair=_NEAREST, p=1.0),
                (0.5, 0.33, 0.25, 0.17, 0.1),
            ),
        ),
        Distortion(
            "quantization",
            22,
            _albu(lambda b: A.Posterize(num_bits=(b, b), p=1.0), (5, 4, 3, 2, 1)),
        ),
        Distortion(
            "color_block",
            23,
            _albu(
                lambda n: A.CoarseDropout(
                    num_holes_range=(n, n),
                    hole_height_range=(0.06, 0.1),
                    hole_width_range=(0.06, 0.1),
                    fill="random_uniform",
                    p=1.0,
                ),
                (1, 3, 6, 10, 16),
            ),
        ),
        Distortion(
            "high_sharpen",
            24,
            _albu(
                lambda a: A.Sharpen(alpha=(a, a), lightness=(1.0, 1.0), p=1.0),
                (0.2, 0.4, 0.6, 0.8, 1.0),
            ),
        ),
        Distortion(
            "contrast_change",
            25,
            _albu(
                lambda c: A.RandomBrightnessContrast(
                    brightness_limit=(0, 0), contrast_limit=(c, c), p=1.0
                ),
                (-0.1, -0.2, -0.35, -0.5, -0.65),
            ),
        ),
    ]
}


def distort(image: np.ndarray, name: str, level: int, seed: int) -> np.ndarray:
    """Apply distortion ``name`` at ``level`` (1..5) to an ``(H, W, 3)`` uint8 image."""
    if name not in DISTORTIONS:
        raise KeyError(f"unknown distortion '{name}'; known: {sorted(DISTORTIONS)}")
    if not 1 <= level <= LEVELS:
        raise ValueError(f"level must be in 1..{LEVELS}, got {level}")
    out = DISTORTIONS[name].apply(np.ascontiguousarray(image), level, seed)
    if out.shape != image.shape or out.dtype != np.uint8:
        raise RuntimeError(f"distortion {name} changed the image to {out.shape} {out.dtype}")
    return out
