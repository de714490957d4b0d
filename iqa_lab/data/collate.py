"""Batching IQADataset items: drops the items that failed to decode (``data.on_bad=skip``) and, for
native-resolution images of different sizes, pads to the largest with a mask (``data.collate=pad``).

Zoom-level views (``transforms.ZoomTransform``: ``{"image": {level: (C, h, w)}}``) are batched per
level, ``{"image": {level: (B, C, h, w)}}``, so every level keeps one static shape; a level whose
views differ in size (the full image of photos of different sizes) is padded with a mask,
``{"mask": {level: (B, h, w)}}``, whatever ``mode`` says.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from iqa_lab.errors import ConfigError

COLLATES = ("stack", "pad")


def pad_images(images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad ``(..., H, W)`` tensors at the bottom and right to the largest ``H`` and ``W``.

    Returns the batch ``(B, ..., H, W)`` and a ``(B, H, W)`` boolean mask, True on real pixels."""
    height = max(image.shape[-2] for image in images)
    width = max(image.shape[-1] for image in images)
    batch = torch.stack(
        [
            F.pad(image, (0, width - image.shape[-1], 0, height - image.shape[-2]))
            for image in images
        ]
    )
    mask = torch.zeros(len(images), height, width, dtype=torch.bool)
    for i, image in enumerate(images):
        mask[i, : image.shape[-2], : image.shape[-1]] = True
    return batch, mask


# Per-item pixel tensors: stacked, or padded alike (an image and its reference share one mask).
PIXEL_KEYS = ("image", "reference")


class IQACollate:
    """Collate for IQADataset items ``{"image", "mos", "index"[, "reference", "db"]}`` and
    bad-item markers ``{"bad"}``.

    The batch holds the good items and ``bad_inputs`` (the markers' ``{"image", "reason"}``), which
    the DataModule moves into its ``bad_inputs`` list; a batch may be empty when all its items were
    bad. ``mode="stack"`` needs equal sizes; ``mode="pad"`` adds ``mask`` (see ``pad_images``)."""

    def __init__(self, mode: str = "stack"):
        if mode not in COLLATES:
            raise ConfigError(f"data.collate must be one of {COLLATES}, got '{mode}'")
        self.mode = mode

    def __call__(self, items: list[dict]) -> dict:
        bad = [item["bad"] for item in items if "bad" in item]
        good = [item for item in items if "bad" not in item]
        batch = {
            "mos": torch.stack([item["mos"] for item in good]) if good else torch.empty(0),
            "index": (
                torch.stack([item["index"] for item in good])
                if good
                else torch.empty(0, dtype=torch.long)
            ),
            "bad_inputs": bad,
        }
        if not good:
            batch["image"] = torch.empty(0)
        for key in PIXEL_KEYS if good else ():
            if key in good[0] and isinstance(good[0][key], Mapping):
                batch[key], masks = _levels([item[key] for item in good])
                if masks:
                    batch["mask"] = masks
            elif key in good[0]:
                batch[key], mask = self._pixels([item[key] for item in good])
                if mask is not None:
                    batch["mask"] = mask
        for key in good[0].keys() - {*PIXEL_KEYS, "mos", "index"} if good else ():
            batch[key] = torch.utils.data.default_collate([item[key] for item in good])
        return batch

    def _pixels(self, images: list) -> tuple[torch.Tensor | dict, torch.Tensor | None]:
        if isinstance(images[0], Mapping):  # cached features of several frozen backbones
            stacked = {key: self._pixels([image[key] for image in images])[0] for key in images[0]}
            return stacked, None
        if self.mode == "pad":
            return pad_images(images)
        shapes = {tuple(image.shape) for image in images}
        if len(shapes) > 1:
            raise ConfigError(
                f"images of different sizes in one batch {sorted(shapes)}: use a "
                f"crop or resize policy (data.transforms), a batch size of 1, or "
                f"data.collate=pad for a model that takes a mask"
            )
        return torch.stack(images), None


def _levels(views: list[Mapping]) -> tuple[dict, dict]:
    """Per-level batches of zoom-level views, and the masks of the levels that needed padding."""
    batch, masks = {}, {}
    for level in views[0]:
        images = [item[level] for item in views]
        if len({tuple(image.shape) for image in images}) == 1:
            batch[level] = torch.stack(images)
        else:
            batch[level], masks[level] = pad_images(images)
    return batch, masks
