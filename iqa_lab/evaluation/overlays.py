"""Pictures of saliency maps (``iqa-explain``): the map as a heat map over the image, with a
caption strip below it, and a contact sheet of several heat maps with their captions.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pytorch_grad_cam.utils.image import show_cam_on_image

from iqa_lab.errors import ConfigError

BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)


def _colormap(name: str) -> int:
    code = getattr(cv2, f"COLORMAP_{name.upper()}", None)
    if code is None:
        raise ConfigError(f"overlay.colormap={name}: not an OpenCV colour map (jet, turbo, ...)")
    return code


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _captioned(picture: Image.Image, lines: Sequence[str], font_size: int) -> Image.Image:
    """``picture`` above a white strip holding ``lines``."""
    font = _font(font_size)
    line_height = font_size + font_size // 3
    strip = line_height * len(lines) + font_size // 2
    out = Image.new("RGB", (picture.width, picture.height + strip), BACKGROUND)
    out.paste(picture, (0, 0))
    draw = ImageDraw.Draw(out)
    top = picture.height + font_size // 4
    for i, line in enumerate(lines):
        draw.text((font_size // 3, top + i * line_height), line, INK, font)
    return out


def heat_map(
    image: np.ndarray, saliency: np.ndarray, *, image_weight: float = 0.5, colormap: str = "jet"
) -> Image.Image:
    """``saliency`` (``(H, W)`` in [0, 1]) as a heat map blended over ``image`` (``(H, W, 3)``
    uint8; ``image_weight`` = the image's share)."""
    if saliency.shape != image.shape[:2]:
        raise ValueError(f"saliency {saliency.shape} and image {image.shape[:2]} differ in size")
    blended = show_cam_on_image(
        image.astype(np.float32) / 255.0,
        np.clip(saliency, 0.0, 1.0),
        use_rgb=True,
        colormap=_colormap(colormap),
        image_weight=image_weight,
    )
    return Image.fromarray(blended)


def captioned(picture: Image.Image, caption: Sequence[str], *, min_side: int = 256) -> Image.Image:
    """``picture`` with ``caption`` lines in a strip below it; a picture whose short side is under
    ``min_side`` is first enlarged by a whole factor (nearest pixel) so the caption stays
    legible."""
    factor = max(1, -(-min_side // min(picture.size)))
    if factor > 1:
        picture = picture.resize((picture.width * factor, picture.height * factor), Image.NEAREST)
    return _captioned(picture, caption, max(12, picture.width // 28))


def contact_sheet(
    pictures: Sequence[Image.Image], captions: Sequence[Sequence[str]], *, columns: int, tile: int
) -> Image.Image:
    """``pictures`` shrunk to fit ``tile`` x ``tile`` pixels, in rows of ``columns``, each with its
    caption lines below it."""
    if not pictures:
        raise ValueError("a contact sheet needs at least one picture")
    font_size = max(10, tile // 20)
    tiles = []
    for picture, lines in zip(pictures, captions):
        thumb = picture.copy()
        thumb.thumbnail((tile, tile))
        framed = Image.new("RGB", (tile, tile), BACKGROUND)
        framed.paste(thumb, ((tile - thumb.width) // 2, (tile - thumb.height) // 2))
        tiles.append(_captioned(framed, lines, font_size))
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    height = max(t.height for t in tiles)
    gap = font_size // 2
    sheet = Image.new(
        "RGB", (columns * (tile + gap) + gap, rows * (height + gap) + gap), BACKGROUND
    )
    for i, picture in enumerate(tiles):
        row, column = divmod(i, columns)
        sheet.paste(picture, (gap + column * (tile + gap), gap + row * (height + gap)))
    return sheet
