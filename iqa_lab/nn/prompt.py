"""Learnable pixel-space visual prompts (Bahng et al., "Exploring visual prompts for adapting
large-scale models", 2022; for NR-IQA the seed abstract's prompts added to the image of a frozen
MLLM).

``PixelPrompt`` adds a learnable tensor to every image of a fixed size ``(H, W)``:

- ``kind=padding``: a frame ``width`` pixels wide around the image (Bahng et al.'s best prompt),
  ``3 * 2 * width * (H + W - 2 * width)`` parameters; the inside is left as it is;
- ``kind=full``: one value per pixel and channel, ``3 * H * W`` parameters (the seed abstract's
  image-sized prompt combined "via addition").

The prompt starts at zero (the frozen model sees the images unchanged at step 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from iqa_lab.errors import ConfigError

KINDS = ("padding", "full")


class PixelPrompt(nn.Module):
    def __init__(self, size: Sequence[int], kind: str = "padding", width: int = 16):
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"model.prompt.kind must be one of {KINDS}, got '{kind}'")
        height, wide = (int(s) for s in size)
        self.size, self.kind, self.width = (height, wide), kind, int(width)
        if kind == "full":
            self.full = nn.Parameter(torch.zeros(1, 3, height, wide))
            return
        if not 0 < 2 * self.width < min(height, wide):
            raise ConfigError(
                f"model.prompt.width={width} needs 0 < 2 * width < min(H, W) of the prompt size "
                f"{list(self.size)}"
            )
        inner = height - 2 * self.width
        self.top = nn.Parameter(torch.zeros(1, 3, self.width, wide))
        self.bottom = nn.Parameter(torch.zeros(1, 3, self.width, wide))
        self.left = nn.Parameter(torch.zeros(1, 3, inner, self.width))
        self.right = nn.Parameter(torch.zeros(1, 3, inner, self.width))

    def expected_parameters(self) -> int:
        """The formula of the module docstring (the tests check the tensors against it)."""
        height, wide = self.size
        if self.kind == "full":
            return 3 * height * wide
        return 3 * 2 * self.width * (height + wide - 2 * self.width)

    def pattern(self) -> torch.Tensor:
        """The ``(1, 3, H, W)`` tensor added to every image."""
        if self.kind == "full":
            return self.full
        inner_width = self.size[1] - 2 * self.width
        middle = torch.cat(
            [
                self.left,
                self.left.new_zeros(1, 3, self.left.shape[2], inner_width),
                self.right,
            ],
            dim=3,
        )
        return torch.cat([self.top, middle, self.bottom], dim=2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[-2:]) != self.size:
            raise ConfigError(
                f"visual prompt of size {list(self.size)} cannot be added to images of "
                f"{list(images.shape[-2:])}: set model.prompt.size to the data's resize "
                f"(data.transforms.*.resize)"
            )
        return images + self.pattern()
