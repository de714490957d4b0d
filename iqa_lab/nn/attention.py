"""Spatial and channel attention gates of QualityNet (Aslam et al., Sci. Reports 2024, Eqs. 1–11),
themselves after MIRNet (Zamir et al., IEEE TPAMI 2022).

Both take and return ``(B, C, H, W)`` maps, so they work on feature maps as on the ``(B, C, 1, 1)``
pooled and reshaped vectors of the paper's order (GAP → reshape (1, 1, C) → spatial → channel).
``gate(x)`` returns the sigmoid gate alone (in (0, 1)); ``forward(x)`` multiplies it in.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn


def _real_positions(mask: torch.Tensor | None, size: torch.Size) -> torch.Tensor | None:
    """``(B, 1, h, w)`` True where a feature position covers real pixels of a padded batch."""
    if mask is None:
        return None
    return F.adaptive_avg_pool2d(mask[:, None].float(), size) > 0


class SpatialAttention(nn.Module):
    """Spatial gate: the channel-wise mean and max of every position (Eqs. 1–2), concatenated
    (Eq. 3), a ``kernel_size`` convolution to one channel and a sigmoid (Eq. 4: 3×3), multiplied
    into every channel of its position (Eq. 5).

    Note: on a pooled ``(B, C, 1, 1)`` input (the paper's order) there is one position, so the gate
    is one scalar per image, computed from the mean and max of its pooled features."""

    def __init__(self, kernel_size: int = 3):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"spatial attention kernel_size={kernel_size}: give an odd size")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` weights in (0, 1)."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class ChannelAttention(nn.Module):
    """Channel gate: the spatial mean (Eq. 6) and max (Eq. 7) of each channel, concatenated to
    ``2C`` values (Eq. 8), ``fc1`` with ReLU to ``C // reduction`` (Eq. 9), ``fc2`` with sigmoid
    back to ``C`` (Eq. 10), multiplied into each channel (Eq. 11).

    The paper does not give fc1's width; ``reduction`` sets it. With the real-pixel ``mask`` of a
    padded batch, the mean and max run over positions covering real pixels only."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(2 * channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def gate(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C, 1, 1)`` weights in (0, 1)."""
        real = _real_positions(mask, x.shape[-2:])
        if real is None:
            avg, peak = x.mean(dim=(2, 3)), x.amax(dim=(2, 3))
        else:
            weights = real.to(x.dtype)
            avg = (x * weights).sum(dim=(2, 3)) / weights.sum(dim=(2, 3)).clamp_min(1.0)
            peak = x.masked_fill(~real, torch.finfo(x.dtype).min).amax(dim=(2, 3))
        hidden = F.relu(self.fc1(torch.cat([avg, peak], dim=1)))
        return torch.sigmoid(self.fc2(hidden))[:, :, None, None]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return x * self.gate(x, mask)


class SpatialChannelAttention(nn.Module):
    """Spatial attention, then channel attention (QualityNet's Eqs. 15–16 / 21–22); either is
    left out when its settings are ``None`` (ablation). The ``mask`` reaches the channel gate's
    pooling."""

    def __init__(self, channels: int, spatial: Mapping | None, channel: Mapping | None):
        super().__init__()
        self.spatial = SpatialAttention(**spatial) if spatial is not None else None
        self.channel = ChannelAttention(channels, **channel) if channel is not None else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.spatial is not None:
            x = self.spatial(x)
        if self.channel is not None:
            x = self.channel(x, mask)
        return x
