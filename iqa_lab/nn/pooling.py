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


def masked_mean_std_pool(
    features: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-6
) -> torch.Tensor:
    """``(B, C, h, w)`` → ``(B, 2C)``: each channel's mean, then its (population) standard
    deviation, over all positions or weighted by ``mask`` as ``masked_mean_pool`` weights them.
    Computed in float32 and returned in the features' dtype: E[x²] - E[x]² in bfloat16 or float16
    (mixed precision) loses every digit of a channel whose spread is small beside its mean."""
    dtype = features.dtype
    features = features.float()
    mean = masked_mean_pool(features, mask)
    second = masked_mean_pool(features * features, mask)
    std = (second - mean * mean).clamp_min(0).add(eps).sqrt()
    return torch.cat([mean, std], dim=1).to(dtype)
