"""MLMS-IQA's multi-level feature aggregation and prediction head (multi-level and multi-scale deep
IQA, §3, Eqs. 10–15, Fig. 6): attention aggregator per level, concatenation, fusion convolutions,
and the dual-branch (score, weight) head.

Readings of the OCR'd text:

- Attention aggregator (Eqs. 10–13): BN → 1×1 conv → 1×1 conv → 5×5 depth-wise conv → dropout,
  added to its (normalised) input; the order follows the prose (Eq. 11's OCR puts the depth-wise
  conv between the two 1×1 convs). The first 1×1 conv widens by ``expansion``, the second returns
  to the input width. Each level has its own aggregator (its own BatchNorm statistics).
- Concatenation (Eq. 14): the aggregated levels along channels; the residual inside each
  aggregator keeps the raw difference maps on that path.
- Fusion (Eq. 15): conv3×3 → ReLU → conv3×3 → ReLU → conv3×3.
- Prediction head: one branch predicts a score per position, the other a weight (sigmoid, as in
  MANIQA, Yang et al. CVPRW 2022); the image score is ``Σ s·w / Σ w`` over real positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AttentionAggregator(nn.Module):
    """Eqs. 10–13 on one level's ``(B, C, h, w)`` difference map; same shape out."""

    def __init__(self, channels: int, expansion: int = 2, dropout: float = 0.1):
        super().__init__()
        hidden = channels * expansion
        self.norm = nn.BatchNorm2d(channels)
        self.body = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.Conv2d(hidden, channels, 1),
            nn.Conv2d(channels, channels, 5, padding=2, groups=channels),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return x + self.body(x)


class FusionModule(nn.Module):
    """Eq. 15: three 3×3 convolutions with a ReLU after the first two."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DualBranchHead(nn.Module):
    """``(B, C, h, w)`` → per-position scores and weights, each ``(B, h, w)``; ``pool`` makes
    the image score."""

    def __init__(self, channels: int, hidden: int, init_bias: float = 0.5):
        super().__init__()

        def branch() -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, 1, 1))

        self.score = branch()
        self.weight = branch()
        nn.init.constant_(self.score[-1].bias, init_bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.score(x)[:, 0], torch.sigmoid(self.weight(x)[:, 0])

    @staticmethod
    def pool(
        scores: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``Σ s·w / Σ w`` per image, positions weighted by their share of real pixels under a
        padded batch's ``(B, H, W)`` ``mask``."""
        if mask is not None:
            real = F.adaptive_avg_pool2d(mask[:, None].to(weights.dtype), weights.shape[-2:])
            weights = weights * real[:, 0]
        return (scores * weights).sum(dim=(1, 2)) / weights.sum(dim=(1, 2)).clamp_min(1e-6)
