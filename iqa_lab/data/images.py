"""Decoding images the way raters saw them: EXIF orientation applied, RGB, 8-bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class BadImageError(RuntimeError):
    """An image file that cannot be used; the message names the file and the fix."""


def load_rgb(path: str | Path) -> np.ndarray:
    """Decode ``path`` to an ``(H, W, 3)`` uint8 array."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode != "RGB":
                image = image.convert("RGB")
            return np.asarray(image, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise BadImageError(f"{path}: file not found; check data.data_dir and the label file") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise BadImageError(f"{path}: cannot be decoded ({err}); re-download or remove this "
                            f"file from the label file") from None
