"""Global pooling that respects the pad mask of native-resolution batches (``data.collate=pad``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mean_pool(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, C, h, w)`` → ``(B, C)``: the mean over all positions, or, given the ``(B, H, W)``
    real-pixel mask of the input, the mean weighted by each position's share of real pixels."""
    if mask is None:
        return features.mean(dim=(2, 3))
    weights = F.adaptive_avg_pool2d(mask[:, None].to(features.dtype), features.shape[-2:])
    return (features * weights).sum(dim=(2, 3)) / weights.sum(dim=(2, 3)).clamp_min(1e-6)
