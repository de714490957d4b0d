"""Pristine photos that installed packages ship (no download): the references of the synthetic
database, and the natural-scene statistics of NIQE-like models."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        image = getattr(skimage.data, name)()
        return image[0] if name == "stereo_motorcycle" else image

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)

    return load


def _matplotlib(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import matplotlib.cbook
        from PIL import Image

        with matplotlib.cbook.get_sample_data(name) as handle:
            return np.asarray(Image.open(handle).convert("RGB"))

    return load


PRISTINE_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "motorcycle_left": _skimage("stereo_motorcycle"),
    "camera": _skimage("camera"),
    "brick": _skimage("brick"),
    "grass": _skimage("grass"),
    "gravel": _skimage("gravel"),
    "coins": _skimage("coins"),
    "moon": _skimage("moon"),
    "hubble_deep_field": _skimage("hubble_deep_field"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
    "retina": _skimage("retina"),
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
    "grace_hopper": _matplotlib("grace_hopper.jpg"),
}


def load_pristine(name: str) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB photo by name (grey photos are replicated to three channels)."""
    if name not in PRISTINE_PHOTOS:
        raise KeyError(f"unknown pristine photo '{name}'; known: {sorted(PRISTINE_PHOTOS)}")
    image = np.asarray(PRISTINE_PHOTOS[name]())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)
