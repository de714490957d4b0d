"""Test-time augmentation (TTA): a recipe turns each image into views, the model scores every view,
and the image's score is the mean over its views. ``IQAModule.score`` calls ``TestTimeAugmentation``
when a model has one (``model.tta``): ``iqa-score tta=…`` and ``python -m iqa_lab.eval … tta=…``
set it from the same configs (``conf/tta/``).

A recipe maps one image ``(C, H, W)`` to groups of views, ``[(V1, C, h1, w1), (V2, C, h2, w2),
…]`` (one group per view size, since views of different sizes cannot share a tensor). Add one by
adding a function to ``RECIPES``; its keyword arguments come from the config's ``options``:

- ``none``: the image as it is;
- ``flip``: the image and its left-right mirror (quality does not change under a mirror);
- ``five_crop``: the four corners and the centre, ``size`` x ``size`` (StairIQA, Sun et al., IEEE
  JSTSP 2023: five 320 crops of the image scaled to a short side of 380);
- ``patch_grid``: the image at each of ``scales``, a ``grid`` x ``grid`` of uniformly spaced
  ``size`` x ``size`` patches per size, and with ``transpose`` each patch transposed too (MSLIQA,
  Jamshidi Avanaki et al. 2024: 9 patches x sizes 224, 384 x scales 0.5, 1, 2 x transpose = 108
  views). A scaled image smaller than a patch is zero-padded at the bottom and right, as
  five-crop pads.

Views are scored ``chunk_size`` at a time (memory stays bounded however many views a batch has);
a long pass shows its progress (``iqa_lab.progress``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from iqa_lab.data.transforms import five_crop_boxes
from iqa_lab.errors import ConfigError
from iqa_lab.progress import Progress

Groups = list[torch.Tensor]


def identity(image: torch.Tensor) -> Groups:
    return [image[None]]


def flip(image: torch.Tensor) -> Groups:
    return [torch.stack([image, image.flip(-1)])]


def _pad_to(image: torch.Tensor, size: int) -> torch.Tensor:
    height, width = image.shape[-2:]
    return F.pad(image, (0, max(0, size - width), 0, max(0, size - height)))


def five_crop(image: torch.Tensor, size: int) -> Groups:
    image = _pad_to(image, size)
    boxes = five_crop_boxes(*image.shape[-2:], size)
    return [torch.stack([image[:, y : y + size, x : x + size] for y, x in boxes])]


def grid_corners(length: int, size: int, count: int) -> list[int]:
    """``count`` uniformly spaced starts of a ``size`` window along ``length`` (first at 0, last
    at ``length - size``)."""
    return [int(round(v)) for v in np.linspace(0, max(0, length - size), count)]


def rescale(image: torch.Tensor, scale: float) -> torch.Tensor:
    """``image`` scaled by ``scale`` (bilinear, antialiased when shrinking)."""
    if scale == 1:
        return image
    return F.interpolate(
        image[None], scale_factor=scale, mode="bilinear", antialias=scale < 1, align_corners=False
    )[0]


def patch_grid(
    image: torch.Tensor,
    sizes: Sequence[int],
    scales: Sequence[float],
    grid: int = 3,
    transpose: bool = True,
) -> Groups:
    groups = []
    for size in sizes:
        patches = []
        for scale in scales:
            scaled = _pad_to(rescale(image, scale), size)
            height, width = scaled.shape[-2:]
            for y in grid_corners(height, size, grid):
                for x in grid_corners(width, size, grid):
                    patches.append(scaled[:, y : y + size, x : x + size])
        views = torch.stack(patches)
        groups.append(torch.cat([views, views.transpose(-1, -2)]) if transpose else views)
    return groups


RECIPES: dict[str, Callable[..., Groups]] = {
    "none": identity,
    "flip": flip,
    "five_crop": five_crop,
    "patch_grid": patch_grid,
}


def _real_extent(image: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """A padded image (``collate=pad``) cut back to its real pixels."""
    if mask is None:
        return image
    rows, cols = mask.any(dim=1), mask.any(dim=0)
    return image[..., : int(rows.sum()), : int(cols.sum())]


class TestTimeAugmentation:
    """Scores images as the mean of a model's scores over the recipe's views.

    ``tta(score, image, reference=…, mask=…, heads=…)``: ``score`` is the model's plain scorer of
    ``(N, C, h, w)`` views (``(N,)`` or ``(N, len(heads))``); ``image`` a batch ``(B, C, H, W)``, or
    ``(B, V, C, H, W)`` of views already (five crops), each of which the recipe augments."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        name: str,
        recipe: str,
        options: Mapping | None = None,
        chunk_size: int = 64,
    ):
        if recipe not in RECIPES:
            raise ConfigError(f"tta {name}: recipe '{recipe}' is not one of {sorted(RECIPES)}")
        if chunk_size < 1:
            raise ConfigError(f"tta {name}: chunk_size={chunk_size}; give a positive number")
        self.name = name
        self.recipe = RECIPES[recipe]
        self.options = dict(options or {})
        accepted = list(inspect.signature(self.recipe).parameters)[1:]
        unknown = sorted(set(self.options) - set(accepted))
        if unknown:
            raise ConfigError(
                f"tta {name}: recipe '{recipe}' has no option {unknown}; its options: "
                f"{accepted or 'none'} (conf/tta/{name}.yaml)"
            )
        self.chunk_size = chunk_size

    def views(self, image: torch.Tensor) -> Groups:
        """The groups of views of one image ``(C, H, W)``, or of each of its views ``(V, C, H,
        W)``, by size."""
        by_shape: dict[tuple, list[torch.Tensor]] = {}
        for view in image if image.dim() == 4 else [image]:
            for group in self.recipe(view, **self.options):
                by_shape.setdefault(tuple(group.shape[1:]), []).append(group)
        return [torch.cat(groups) for groups in by_shape.values()]

    def view_count(self, image: torch.Tensor) -> int:
        return sum(len(group) for group in self.views(image))

    def __call__(
        self,
        score: Callable[..., torch.Tensor],
        image: torch.Tensor,
        *,
        reference: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        heads: list[str] | None = None,
    ) -> torch.Tensor:
        # Each size's views of the whole batch, with the image each came from.
        queue: dict[tuple, dict[str, list]] = {}
        counts = torch.zeros(len(image))
        for b in range(len(image)):
            extent = mask[b] if mask is not None else None
            pairs = [("image", _real_extent(image[b], extent))]
            if reference is not None:
                pairs.append(("reference", _real_extent(reference[b], extent)))
            groups = {key: self.views(pixels) for key, pixels in pairs}
            for i, views in enumerate(groups["image"]):
                slot = queue.setdefault(tuple(views.shape[1:]), {"owner": [], "image": []})
                slot["owner"].append(torch.full((len(views),), b))
                slot["image"].append(views)
                if reference is not None:
                    slot.setdefault("reference", []).append(groups["reference"][i])
                counts[b] += len(views)
        total, sums = int(counts.sum()), None
        with Progress(total, f"tta {self.name}", unit="views") as bar:
            for slot in queue.values():
                owner = torch.cat(slot["owner"]).to(image.device)
                views = torch.cat(slot["image"])
                references = torch.cat(slot["reference"]) if "reference" in slot else None
                for start in range(0, len(views), self.chunk_size):
                    part = slice(start, start + self.chunk_size)
                    scores = score(
                        views[part],
                        reference=None if references is None else references[part],
                        heads=heads,
                    ).float()
                    if sums is None:
                        sums = scores.new_zeros(len(image), *scores.shape[1:])
                    sums.index_add_(0, owner[part], scores)
                    bar.advance(len(scores))
        counts = counts.to(sums.device).view(-1, *([1] * (sums.dim() - 1)))
        return sums / counts


def build_tta(cfg: Mapping | None) -> TestTimeAugmentation | None:
    """The wrapper a ``conf/tta/*.yaml`` config describes; None for the identity recipe."""
    if cfg is None or cfg.get("recipe", "none") == "none":
        return None
    return TestTimeAugmentation(**dict(cfg))
