"""The staircase: hierarchical fusion of a backbone's stage features (StairIQA, Sun et al. 2023,
§III-A, Fig. 2, Eqs. 2-5).

A backbone exposes ``n`` feature levels (timm ``features_only``: channels and reductions read from
``feature_info``; ResNet50 has five: the stem and layer1..layer4). Path ``k`` (1-based,
``k = 1..n-1``) starts at level ``k-1`` and climbs the staircase one level at a time: a bottleneck
bridge (1x1 conv to a quarter of the channels, 3x3 conv with the stride between the two levels,
1x1 conv to the next level's channels; linear, as Eq. 2 writes it) brings it to the next level's
shape, where that level's features are added before the next bridge (Eq. 4). Every path ends at
the last level, where the fused features are the sum of the last level's features and every
path's output (Eq. 5). This is the official code's order: ``bridge(path + F_level)``.

``paths`` selects the paths (StairIQA Table VII): ``None`` = all, ``[4]`` = Path 4 only,
``[]`` = no staircase (the last level's features alone).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from iqa_lab.errors import ConfigError


class Bridge(nn.Sequential):
    """1x1 conv (channels / 4) → 3x3 conv with ``stride`` → 1x1 conv (``out_channels``)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        hidden = max(1, in_channels // 4)
        super().__init__(
            nn.Conv2d(in_channels, hidden, kernel_size=1, bias=False),
            nn.Conv2d(hidden, hidden, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.Conv2d(hidden, out_channels, kernel_size=1, bias=False),
        )


def _stride(reduction_from: int, reduction_to: int) -> int:
    ratio = reduction_to / reduction_from
    return int(ratio) if ratio >= 1 and ratio == int(ratio) else 1


def _match(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``x`` resized to ``target``'s spatial size when odd input sizes leave them one pixel off."""
    if x.shape[-2:] == target.shape[-2:]:
        return x
    return F.interpolate(x, size=target.shape[-2:], mode="bilinear", align_corners=False)


class Staircase(nn.Module):
    """Fuses a list of feature maps (levels 0..n-1) into one map shaped like the last level."""

    def __init__(
        self, channels: Sequence[int], reductions: Sequence[int], paths: Sequence[int] | None = None
    ):
        super().__init__()
        if len(channels) != len(reductions) or len(channels) < 1:
            raise ValueError(
                f"channels {list(channels)} and reductions {list(reductions)} must "
                f"describe the same (non-empty) levels"
            )
        levels = len(channels)
        available = list(range(1, levels))
        paths = available if paths is None else sorted({int(p) for p in paths})
        unknown = [p for p in paths if p not in available]
        if unknown:
            raise ConfigError(
                f"staircase paths {unknown} do not exist: a backbone with {levels} "
                f"feature levels has paths {available} (path k starts at level k-1)"
            )
        self.levels = levels
        self.path_ids = list(paths)
        self.paths = nn.ModuleList(
            nn.ModuleList(
                Bridge(
                    channels[level],
                    channels[level + 1],
                    _stride(reductions[level], reductions[level + 1]),
                )
                for level in range(path - 1, levels - 1)
            )
            for path in self.path_ids
        )
        self.out_channels = channels[-1]

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(features) != self.levels:
            raise ValueError(
                f"the staircase was built for {self.levels} feature levels, got {len(features)}"
            )
        fused = features[-1]
        for path, bridges in zip(self.path_ids, self.paths):
            x = features[path - 1]
            for step, bridge in enumerate(bridges):
                level = path - 1 + step
                if step:
                    x = x + features[level]
                x = _match(bridge(x), features[level + 1])
            fused = fused + x
        return fused
