"""Crop / resize policies as albumentations pipelines; output is a float tensor in [0, 1].

A data config's ``transforms: {train: {...}, eval: {...}}`` blocks are the keyword arguments of
``build_transform``. Presets in ``conf/transforms/`` replace them: ``+transforms=stairiqa`` on the
command line, or ``- /transforms: stairiqa`` in a model's (or experiment's) defaults list, so a
model brings its own policy to any database:

- full image: no ``crop_size``, no ``resize`` (native resolution; batches of different sizes need
  ``data.collate=pad`` or a batch size of 1);
- random crop at native resolution: ``crop_size: 224`` (train: random crop, eval: centre crop);
- fixed resize: ``resize: [H, W]``;
- StairIQA: train ``{resize_short_side: 380, crop_size: 320, hflip: true}``, eval
  ``{resize_short_side: 380, crop_size: 320, crop: five}``; five crops (the four corners, then the
  centre) come out stacked as ``(5, C, H, W)`` per image and the model scores their mean;
- zoom levels (MSLIQA): ``zoom: [{name: crop224, crop: 224}, {name: resize512, resize: 512},
  {name: full}, ...]`` gives every image one view per level, ``{"image": {name: (C, h, w)}}``
  (``ZoomTransform``); a level resizes to ``resize`` x ``resize`` and/or crops ``crop`` x ``crop``
  (random at train, centre otherwise), nothing = the full image; flips apply to every level;
- padding: ``pad_to: 340, pad_fill: 255`` pads smaller images to 340 x 340 with white, centred,
  before any scaling or crop (StairIQA's FLIVE "white fill", then its short side to 340; 256 for
  FLIVE patches).

Quality-preserving by default: only operations that do not change perceived quality (resizing
with area interpolation, crops, flips). Anything that changes the label (blur, noise, JPEG, colour
jitter) runs only when a config lists it under ``augment`` (albumentations class name →
arguments; train only). iqa_lab's own transforms (``OWN_TRANSFORMS``: ``JNDMix``, noise below the
just-noticeable difference, which keeps the label true) are listed there the same way.

Image and reference: ``transform(image=..., reference=...)`` gives a full-reference model its
reference under the very same geometry as the image (same resize, crop box, flip; albumentations
draws the parameters once for both). Pixel-level augmentations (blur, noise, colour: those that
change quality) apply to the image only, after the geometric ones; the reference stays pristine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from iqa_lab.data.jnd import JNDMix
from iqa_lab.errors import ConfigError

CROPS = ("random", "center", "five")


def _to_tensor() -> list:
    return [A.ToFloat(max_value=255.0), ToTensorV2()]


# iqa_lab's own albumentations-compatible transforms, listed under ``augment`` by class name like
# albumentations' own.
OWN_TRANSFORMS = {"JNDMix": JNDMix}


def _augmentations(augment: Mapping | None) -> tuple[list, list]:
    """The ``augment`` ops split into geometric ones (applied to image and reference alike) and
    pixel-level ones (image only)."""
    geometric, pixel = [], []
    for name, kwargs in (augment or {}).items():
        cls = OWN_TRANSFORMS.get(name, getattr(A, name, None))
        if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform)):
            raise ConfigError(
                f"transforms augment: '{name}' is not an albumentations transform nor one of "
                f"iqa_lab's ({sorted(OWN_TRANSFORMS)})"
            )
        (pixel if issubclass(cls, A.ImageOnlyTransform) else geometric).append(
            cls(**dict(kwargs or {}))
        )
    return geometric, pixel


def _paired(ops: list) -> A.Compose:
    return A.Compose(ops, additional_targets={"reference": "image"})


class IQATransform:
    """Geometric ops on the image and, when given, its reference (one draw of parameters for
    both); then pixel-level augmentations on the image only; then tensors in [0, 1].

    ``transform(image=array[, reference=array])`` returns ``{"image"[, "reference"]}``."""

    def __init__(self, geometric: list, pixel: list | None = None):
        self.geometric = _paired(geometric)
        self.pixel = A.Compose(list(pixel or []))
        self.to_tensor = A.Compose(_to_tensor())

    @property
    def transforms(self) -> list:
        """Every op in the order it runs."""
        return [*self.geometric.transforms, *self.pixel.transforms, *self.to_tensor.transforms]

    def set_random_seed(self, seed: int) -> None:
        self.geometric.set_random_seed(seed)
        self.pixel.set_random_seed((seed + 1) % 2**32)

    def __call__(self, image: np.ndarray, reference: np.ndarray | None = None, **_) -> dict:
        pair = {"image": image} if reference is None else {"image": image, "reference": reference}
        out = self.geometric(**pair)
        result = {"image": self.to_tensor(image=self.pixel(image=out["image"])["image"])["image"]}
        if reference is not None:
            result["reference"] = self.to_tensor(image=out["reference"])["image"]
        return result


def five_crop_boxes(height: int, width: int, size: int) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of the four corner crops and the centre crop, in that order."""
    y, x = height - size, width - size
    return [(0, 0), (0, x), (y, 0), (y, x), (y // 2, x // 2)]


class FiveCrop:
    """``pre`` (resize, padding to at least the crop), then the four corners and the centre:
    ``transform(image=array)["image"]`` is a ``(5, C, size, size)`` tensor in [0, 1]; a
    ``reference`` gets the same five boxes."""

    def __init__(self, pre: list, size: int):
        self.pre = _paired(pre)
        self.size = size
        self.post = A.Compose(_to_tensor())

    def _crops(self, image: np.ndarray) -> torch.Tensor:
        return torch.stack(
            [
                self.post(image=np.ascontiguousarray(image[y : y + self.size, x : x + self.size]))[
                    "image"
                ]
                for y, x in five_crop_boxes(*image.shape[:2], self.size)
            ]
        )

    def __call__(self, image: np.ndarray, reference: np.ndarray | None = None, **_) -> dict:
        pair = {"image": image} if reference is None else {"image": image, "reference": reference}
        out = self.pre(**pair)
        return {key: self._crops(out[key]) for key in pair}


ZOOM_KEYS = ("name", "crop", "resize")


class ZoomTransform:
    """One view per zoom level: ``transform(image=array)`` is ``{"image": {level: tensor}}``
    (a ``reference`` gets each level's geometry too). Levels are data (``zoom_levels``)."""

    def __init__(self, levels: dict[str, IQATransform]):
        self.levels = levels

    def set_random_seed(self, seed: int) -> None:
        for offset, transform in enumerate(self.levels.values()):
            transform.set_random_seed((seed + 7919 * offset) % 2**32)

    def __call__(self, **pixels) -> dict:
        views = {name: transform(**pixels) for name, transform in self.levels.items()}
        return {key: {name: out[key] for name, out in views.items()} for key in pixels}


def zoom_levels(stage: str, levels: Sequence[Mapping], **common) -> ZoomTransform:
    """``ZoomTransform`` of ``levels`` (each ``{name, crop?, resize?}``); ``common`` (flips,
    ``augment``) apply to every level."""
    transforms = {}
    for level in levels:
        unknown = sorted(set(level) - set(ZOOM_KEYS))
        if unknown or not level.get("name"):
            raise ConfigError(
                f"zoom level {dict(level)}: give a name and optionally crop and resize (pixels), "
                f"e.g. {{name: resize512_crop224, resize: 512, crop: 224}}; unknown keys {unknown}"
            )
        if level["name"] in transforms:
            raise ConfigError(f"zoom level '{level['name']}' is listed twice; names are unique")
        side = level.get("resize")
        transforms[level["name"]] = build_transform(
            stage, crop_size=level.get("crop"), resize=[side, side] if side else None, **common
        )
    if not transforms:
        raise ConfigError("transforms zoom: [] lists no zoom level; give at least one")
    return ZoomTransform(transforms)


def build_transform(
    stage: str,
    crop_size: int | None = None,
    hflip: bool = False,
    resize_short_side: int | None = None,
    resize: Sequence[int] | None = None,
    crop: str | None = None,
    vflip: bool = False,
    augment: Mapping | None = None,
    pad_to: int | None = None,
    pad_fill: int = 0,
    zoom: Sequence[Mapping] | None = None,
):
    """The pipeline for ``stage`` (``train``, ``val`` or ``test``).

    ``zoom`` (a list of levels) gives one view per level instead (``zoom_levels``), with the
    flips and ``augment`` here; the other crop and resize keys must then be unset.

    ``pad_to`` first pads to at least that square with ``pad_fill``; ``resize_short_side`` then
    scales the short side to that length, ``resize: [H, W]`` to a fixed size (give one of the two);
    ``crop_size`` with ``crop`` = ``random`` (train default), ``center`` (val/test default) or
    ``five``; flips and ``augment`` apply at train only."""
    if zoom is not None:
        if crop_size or resize_short_side or resize or crop or pad_to:
            raise ConfigError(
                "transforms: zoom levels bring their own crop and resize; unset crop_size, "
                "crop, resize, resize_short_side and pad_to next to zoom"
            )
        return zoom_levels(stage, zoom, hflip=hflip, vflip=vflip, augment=augment)
    train = stage == "train"
    if resize_short_side and resize:
        raise ConfigError("transforms: give resize_short_side or resize, not both")
    crop = crop or ("random" if train else "center")
    if crop not in CROPS:
        raise ConfigError(f"transforms crop must be one of {CROPS}, got '{crop}'")
    ops: list = []
    # Padding first: StairIQA's FLIVE pictures are white-filled, then scaled (its official code).
    if pad_to:
        ops.append(
            A.PadIfNeeded(
                pad_to, pad_to, position="center", border_mode=cv2.BORDER_CONSTANT, fill=pad_fill
            )
        )
    if resize_short_side:
        ops.append(A.SmallestMaxSize(max_size=resize_short_side, area_for_downscale="image"))
    if resize:
        height, width = resize
        ops.append(A.Resize(height, width, area_for_downscale="image"))
    if crop_size and crop == "five":
        ops.append(
            A.PadIfNeeded(
                crop_size, crop_size, position="center", border_mode=cv2.BORDER_CONSTANT, fill=0
            )
        )
        return FiveCrop(ops, crop_size)
    if crop_size:
        kind = A.RandomCrop if crop == "random" else A.CenterCrop
        ops.append(kind(crop_size, crop_size, pad_if_needed=True))
    pixel: list = []
    if train:
        if hflip:
            ops.append(A.HorizontalFlip(p=0.5))
        if vflip:
            ops.append(A.VerticalFlip(p=0.5))
        geometric, pixel = _augmentations(augment)
        ops.extend(geometric)
    return IQATransform(ops, pixel)
