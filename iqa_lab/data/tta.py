"""Test-time augmentation recipes by name (``iqa-score tta=…``): each turns one image's
transformed views ``(C, H, W)`` or ``(V, C, H, W)`` into more views ``(V', C, H, W)``, which
``IQAModule.score`` averages. Add a recipe by adding a function to ``RECIPES``.

- ``none``: the eval transform's output as it is;
- ``flip``: each view and its left-right mirror (quality does not change under a mirror).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from iqa_lab.errors import ConfigError


def _views(image: torch.Tensor) -> torch.Tensor:
    return image if image.dim() == 4 else image[None]


def _flip(image: torch.Tensor) -> torch.Tensor:
    views = _views(image)
    return torch.cat([views, views.flip(-1)])


RECIPES: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {"none": None, "flip": _flip}


class TTATransform:
    """An eval transform followed by the TTA recipe ``name`` on the image (and, for a
    full-reference model, on its reference alike)."""

    def __init__(self, transform, name: str):
        if name not in RECIPES:
            raise ConfigError(f"tta={name}: the recipes are {sorted(RECIPES)}")
        self.transform = transform
        self.recipe = RECIPES[name]

    def __call__(self, **pixels) -> dict:
        out = self.transform(**pixels)
        if self.recipe is None:
            return out
        return {key: self.recipe(value) for key, value in out.items()}
