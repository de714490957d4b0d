"""Full-reference metrics: one wrapper over piq, which does the maths. Each metric's convention
is set here (and shown in ``conf/model/classical.yaml``), since published numbers depend on it:

| metric | piq call | convention |
|---|---|---|
| ``psnr`` | ``psnr(convert_to_greyscale=True)`` | luminance (YIQ Y), data range 1 |
| ``ssim`` | ``ssim(downsample=True)`` on YIQ Y | 11x11 Gaussian σ 1.5, Wang's automatic downsampling by ``round(min(H, W) / 256)`` as ``ssim.m`` |
| ``ms_ssim`` | ``multi_scale_ssim`` on YIQ Y | the 5 standard scales; an image under 161 px keeps the first scales that fit (weights renormalised, as the synthetic labeller) |
| ``fsim`` | ``fsim(chromatic=False)`` | FSIM on luminance (``chromatic: true`` gives FSIMc), piq downsamples as the original |
| ``vif_p`` | ``vif_p`` | pixel-domain VIF on YIQ Y (piq converts), σ²ₙ = 2 |
| ``gmsd`` | ``gmsd`` | YIQ Y, 2x2 average pooling as the original (piq does both) |

All inputs are the decoded 8-bit RGB images scaled to [0, 1] (``data_range=1``). Scores are
oriented so that higher = better: ``gmsd`` (a deviation) is negated.
LPIPS and DISTS are not offered: piq and torchmetrics download their weights at first use, and no
installed package ships them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import piq
import torch
from piq.functional import rgb2yiq

HIGHER_BETTER = {
    "psnr": True,
    "ssim": True,
    "ms_ssim": True,
    "fsim": True,
    "vif_p": True,
    "gmsd": False,
}
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 → contiguous ``(1, 3, H, W)`` float64 on [0, 1]. Contiguous because
    piq is several times slower on the channels-last strides a plain permute leaves (PSNR of a
    512 px pair: 37 ms against 9 ms)."""
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    return pixels.to(torch.float64, memory_format=torch.contiguous_format).div_(255)


def _luma(x: torch.Tensor) -> torch.Tensor:
    return rgb2yiq(x)[:, :1] if x.size(1) == 3 else x


def ms_ssim_weights(side: int, kernel_size: int = 11) -> torch.Tensor | None:
    """None (piq's five standard weights) when the image is large enough, else the first scales
    that fit, renormalised."""
    scales = int(np.clip(np.floor(np.log2((side - 1) / (kernel_size - 1))) + 1, 1, 5))
    if scales == len(MS_SSIM_WEIGHTS):
        return None
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=torch.float64)
    return weights / weights.sum()


def fr_value(
    metric: str, distorted: torch.Tensor, reference: torch.Tensor, options: Mapping | None = None
) -> float:
    """The raw value of ``metric`` (piq's orientation) for ``(1, 3, H, W)`` tensors on [0, 1]."""
    options = dict(options or {})
    x, y = distorted, reference
    if x.shape != y.shape:
        raise ValueError(
            f"{metric}: distorted {tuple(x.shape[-2:])} and reference "
            f"{tuple(y.shape[-2:])} differ in size"
        )
    if options.pop("luminance", False):
        x, y = _luma(x), _luma(y)
    if metric == "psnr":
        value = piq.psnr(x, y, data_range=1.0, **options)
    elif metric == "ssim":
        value = piq.ssim(x, y, data_range=1.0, **options)
    elif metric == "ms_ssim":
        weights = ms_ssim_weights(min(x.shape[-2:]), options.get("kernel_size", 11))
        value = piq.multi_scale_ssim(x, y, data_range=1.0, scale_weights=weights, **options)
    elif metric == "fsim":
        value = piq.fsim(x, y, data_range=1.0, **options)
    elif metric == "vif_p":
        value = piq.vif_p(x, y, data_range=1.0, **options)
    elif metric == "gmsd":
        value = piq.gmsd(x, y, data_range=1.0, **options)
    else:
        raise ValueError(
            f"unknown full-reference metric '{metric}'; known: {sorted(HIGHER_BETTER)}"
        )
    return float(value)


def fr_score(
    metric: str, distorted: np.ndarray, reference: np.ndarray, options: Mapping | None = None
) -> float:
    """Quality of a distorted 8-bit RGB image against its reference, higher = better."""
    value = fr_value(metric, to_tensor(distorted), to_tensor(reference), options)
    return value if HIGHER_BETTER[metric] else -value
