"""Metrics computed by piq: FSIMc (piq's FSIM matches the original ``FeatureSIM.m`` on 0..255),
pixel-domain VIF (``vif_p``, its own metric), and piq's defaults of PSNR, SSIM, MS-SSIM, FSIM and
GMSD kept as named variants (``*_piq``) for comparison with results computed by piq.

piq's defaults: images on [0, 1] as float64, luminance = YIQ Y unrounded (piq's ``rgb2yiq``);
``psnr_piq`` on that luminance; ``ssim_piq`` with Wang's automatic downsampling; ``ms_ssim_piq``
by the product of the scales (fewer scales, renormalised, on images under 161 px);
``fsim_piq`` on luminance only; ``gmsd_piq`` on YIQ Y.
"""

from __future__ import annotations

import numpy as np
import piq
import torch
from piq.functional import rgb2yiq

from iqa_lab.classical.fr import MS_SSIM_WEIGHTS, check_pair


def to_tensor(image: np.ndarray, scale: float = 255.0) -> torch.Tensor:
    """``(H, W, 3)`` or ``(N, H, W, 3)`` uint8 → contiguous ``(N, 3, H, W)`` float64 divided by
    ``scale``. Contiguous because piq is several times slower on the channels-last strides a
    plain permute leaves (PSNR of a 512 px pair: 37 ms against 9 ms)."""
    batch = image[None] if image.ndim == 3 else image
    pixels = torch.from_numpy(np.array(batch, copy=True)).permute(0, 3, 1, 2)
    return pixels.to(torch.float64, memory_format=torch.contiguous_format).div_(scale)


def _luma(x: torch.Tensor) -> torch.Tensor:
    return rgb2yiq(x)[:, :1]


def _out(values: torch.Tensor, image: np.ndarray):
    values = values.reshape(-1).numpy()
    return float(values[0]) if image.ndim == 3 else values


def _ms_ssim_weights(side: int, kernel_size: int = 11) -> torch.Tensor | None:
    """None (piq's five standard weights) when the image is large enough, else the first scales
    that fit, renormalised."""
    scales = int(np.clip(np.floor(np.log2((side - 1) / (kernel_size - 1))) + 1, 1, 5))
    if scales == len(MS_SSIM_WEIGHTS):
        return None
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=torch.float64)
    return weights / weights.sum()


def _pair(distorted: np.ndarray, reference: np.ndarray, metric: str, scale: float = 255.0):
    check_pair(distorted, reference, metric)
    return to_tensor(distorted, scale), to_tensor(reference, scale)


def fsim(distorted: np.ndarray, reference: np.ndarray):
    """FSIMc (Zhang et al., TIP 2011) on RGB at 0..255: piq's ``fsim(chromatic=True)``, in
    float32 — 2.5x faster than float64 and the same error against the published values (8e-5)."""
    x, y = _pair(distorted, reference, "fsim", scale=1.0)
    values = piq.fsim(x.float(), y.float(), data_range=255.0, chromatic=True, reduction="none")
    return _out(values.double(), distorted)


def vif_p(distorted: np.ndarray, reference: np.ndarray):
    """Pixel-domain VIF (piq's ``vif_p``: YIQ Y, σ²ₙ = 2), not the wavelet ``vifvec``."""
    x, y = _pair(distorted, reference, "vif_p")
    return _out(piq.vif_p(x, y, data_range=1.0, reduction="none"), distorted)


def psnr_piq(distorted: np.ndarray, reference: np.ndarray):
    x, y = _pair(distorted, reference, "psnr_piq")
    values = piq.psnr(x, y, data_range=1.0, convert_to_greyscale=True, reduction="none")
    return _out(values, distorted)


def ssim_piq(distorted: np.ndarray, reference: np.ndarray):
    x, y = _pair(distorted, reference, "ssim_piq")
    values = piq.ssim(_luma(x), _luma(y), data_range=1.0, downsample=True, reduction="none")
    return _out(values, distorted)


def ms_ssim_piq(distorted: np.ndarray, reference: np.ndarray):
    x, y = _pair(distorted, reference, "ms_ssim_piq")
    weights = _ms_ssim_weights(min(x.shape[-2:]))
    values = piq.multi_scale_ssim(
        _luma(x), _luma(y), data_range=1.0, scale_weights=weights, reduction="none"
    )
    return _out(values, distorted)


def fsim_piq(distorted: np.ndarray, reference: np.ndarray):
    x, y = _pair(distorted, reference, "fsim_piq")
    return _out(piq.fsim(x, y, data_range=1.0, chromatic=False, reduction="none"), distorted)


def gmsd_piq(distorted: np.ndarray, reference: np.ndarray):
    x, y = _pair(distorted, reference, "gmsd_piq")
    return _out(piq.gmsd(x, y, data_range=1.0, reduction="none"), distorted)
