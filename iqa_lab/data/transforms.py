"""Crop / resize policies as albumentations pipelines; output is a float tensor in [0, 1].

Quality-preserving by default: only geometric operations that do not change perceived quality
(crops, flips). Anything that changes the label (blur, noise, JPEG, colour) must be asked for.
"""

from __future__ import annotations

import albumentations as A
from albumentations.pytorch import ToTensorV2


def _to_tensor() -> list:
    return [A.ToFloat(max_value=255.0), ToTensorV2()]


def build_transform(stage: str, crop_size: int | None = None, hflip: bool = False,
                    resize_short_side: int | None = None) -> A.Compose:
    """``train``: optional short-side resize, random crop, optional flip; ``val``/``test``: the
    same resize and a centre crop."""
    ops: list = []
    if resize_short_side:
        ops.append(A.SmallestMaxSize(max_size=resize_short_side, area_for_downscale="image"))
    if crop_size:
        if stage == "train":
            ops.append(A.RandomCrop(crop_size, crop_size, pad_if_needed=True))
        else:
            ops.append(A.CenterCrop(crop_size, crop_size, pad_if_needed=True))
    if hflip and stage == "train":
        ops.append(A.HorizontalFlip(p=0.5))
    return A.Compose(ops + _to_tensor())
