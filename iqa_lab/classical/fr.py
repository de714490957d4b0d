"""Full-reference metrics as their original MATLAB code computes them, in float64 NumPy.

Every function takes the distorted and the reference image as uint8 RGB arrays ``(H, W, 3)``, or
batches ``(N, H, W, 3)`` of equal size, and returns the value in the original's units and
orientation (a float, or an ``(N,)`` array for a batch). "grey" is MATLAB ``rgb2gray`` on uint8
(rounded, 0..255), as the originals read an image.

- ``psnr``: all three RGB channels, peak 255 (dB).
- ``ssim``: ``ssim.m`` (Wang et al., TIP 2004) on grey, L = 255, 11x11 Gaussian σ 1.5 'valid',
  K = (0.01, 0.03), mean of the map; ``downsample=True`` adds ``ssim.m``'s automatic
  ``round(min(H, W) / 256)`` box downsampling (the published reference values ran without it).
- ``ms_ssim``: ``msssim.m`` (Wang, Simoncelli & Bovik, 2003) on grey, 5 scales with weights
  (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2x2 symmetric box filter then decimation between
  scales; ``pooling='wtd_sum'`` (the published values) or ``'product'`` (the paper's formula).
- ``gmsd``: ``GMSD.m`` (Xue et al., TIP 2014) on grey, 2x2 average and decimation, Prewitt
  gradients, T = 170, standard deviation of the map (lower = better).
"""

from __future__ import annotations

import numpy as np

from iqa_lab.classical.matlab import filter2, fspecial_gaussian, imfilter_box_symmetric, rgb2gray

MS_SSIM_WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
MS_SSIM_POOLINGS = ("wtd_sum", "product")
SSIM_WINDOW = fspecial_gaussian(11, 1.5)
GMSD_T = 170.0


def check_pair(distorted: np.ndarray, reference: np.ndarray, metric: str) -> None:
    """Raise a clear error unless both are uint8 RGB arrays of one size."""
    for what, image in (("distorted", distorted), ("reference", reference)):
        if image.dtype != np.uint8 or image.ndim not in (3, 4) or image.shape[-1] != 3:
            raise ValueError(
                f"{metric}: the {what} image must be uint8 RGB (H, W, 3) or (N, H, W, 3), got "
                f"{image.dtype} {image.shape}; decode files with iqa_lab.data.images.load_rgb"
            )
    if distorted.shape != reference.shape:
        raise ValueError(
            f"{metric}: distorted {distorted.shape[-3:-1]} and reference "
            f"{reference.shape[-3:-1]} differ in size; full-reference metrics compare pixels"
        )


def _out(values: np.ndarray):
    return float(values) if np.ndim(values) == 0 else values


def psnr(distorted: np.ndarray, reference: np.ndarray):
    """PSNR in dB over all RGB channels, peak 255 (``inf`` for identical images)."""
    check_pair(distorted, reference, "psnr")
    diff = distorted.astype(np.float64) - reference.astype(np.float64)
    mse = np.mean(diff**2, axis=(-3, -2, -1))
    with np.errstate(divide="ignore"):
        return _out(10 * np.log10(255.0**2 / mse))


def _ssim_maps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ssim_index_new``'s SSIM and contrast-structure maps of grey images on 0..255."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    stacked = np.stack([x, y, x * x, y * y, x * y])
    mu1, mu2, xx, yy, xy = filter2(SSIM_WINDOW, stacked, "valid")
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq, sigma2_sq, sigma12 = xx - mu1_sq, yy - mu2_sq, xy - mu1_mu2
    cs_map = (2 * sigma12 + c2) / (sigma1_sq + sigma2_sq + c2)
    ssim_map = (2 * mu1_mu2 + c1) / (mu1_sq + mu2_sq + c1) * cs_map
    return ssim_map, cs_map


def _box_decimate(image: np.ndarray, factor: int) -> np.ndarray:
    return imfilter_box_symmetric(image, factor)[..., ::factor, ::factor]


def ssim(distorted: np.ndarray, reference: np.ndarray, downsample: bool = False):
    """SSIM of ``ssim.m`` on grey (see the module docstring)."""
    check_pair(distorted, reference, "ssim")
    x, y = rgb2gray(distorted), rgb2gray(reference)
    factor = max(1, int(np.floor(min(x.shape[-2:]) / 256 + 0.5)))  # MATLAB round
    if downsample and factor > 1:
        x, y = _box_decimate(x, factor), _box_decimate(y, factor)
    ssim_map, _ = _ssim_maps(x, y)
    return _out(ssim_map.mean(axis=(-2, -1)))


def ms_ssim_levels(side: int, levels: int = len(MS_SSIM_WEIGHTS)) -> int:
    """How many of ``levels`` scales an image of ``side`` px (its shorter side) holds: each
    needs the 11 px window after halving."""
    fit = 1
    while fit < levels and side // 2**fit >= 11:
        fit += 1
    return fit


def ms_ssim(distorted: np.ndarray, reference: np.ndarray, pooling: str = "wtd_sum"):
    """MS-SSIM of ``msssim.m`` on grey (see the module docstring). Images under 176 px a side,
    which ``msssim.m`` refuses, keep the first scales that fit, weights renormalised."""
    check_pair(distorted, reference, "ms_ssim")
    if pooling not in MS_SSIM_POOLINGS:
        raise ValueError(f"ms_ssim pooling must be one of {MS_SSIM_POOLINGS}, got '{pooling}'")
    x, y = rgb2gray(distorted), rgb2gray(reference)
    if min(x.shape[-2:]) < 11:
        raise ValueError(
            f"ms_ssim needs images of at least 11 px a side, got {x.shape[-1]}x{x.shape[-2]}"
        )
    levels = ms_ssim_levels(min(x.shape[-2:]))
    weights = MS_SSIM_WEIGHTS[:levels]
    mcs = []
    for level in range(levels):
        ssim_map, cs_map = _ssim_maps(x, y)
        mcs.append(cs_map.mean(axis=(-2, -1)))
        if level < levels - 1:
            x, y = _box_decimate(x, 2), _box_decimate(y, 2)
    mssim = ssim_map.mean(axis=(-2, -1))
    mcs = np.stack(mcs[:-1]) if levels > 1 else np.ones((0,) + np.shape(mssim))
    if pooling == "wtd_sum" or levels < len(MS_SSIM_WEIGHTS):
        weights = weights / weights.sum()
    scale_weights = weights[:-1].reshape((-1,) + (1,) * (mcs.ndim - 1))
    if pooling == "product":
        return _out(np.prod(mcs**scale_weights, axis=0) * mssim ** weights[-1])
    return _out(np.sum(mcs * scale_weights, axis=0) + mssim * weights[-1])


PREWITT_X = np.array([[1.0, 0.0, -1.0]] * 3) / 3


def _conv2_same(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """MATLAB ``conv2(image, kernel, 'same')`` for an odd kernel: correlation with it flipped."""
    return filter2(kernel[::-1, ::-1], image, "same")


def gmsd(distorted: np.ndarray, reference: np.ndarray):
    """GMSD of ``GMSD.m`` on grey (lower = better)."""
    check_pair(distorted, reference, "gmsd")
    grey = []
    for image in (distorted, reference):
        g = rgb2gray(image)
        # conv2(Y, ones(2)/4, 'same') then Y(1:2:end, 1:2:end): the 2x2 mean anchored at the
        # top-left pixel, zero beyond the last row and column.
        padded = np.pad(g, [(0, 0)] * (g.ndim - 2) + [(0, 1), (0, 1)])
        mean = (
            padded[..., :-1, :-1]
            + padded[..., 1:, :-1]
            + padded[..., :-1, 1:]
            + padded[..., 1:, 1:]
        ) / 4
        grey.append(mean[..., ::2, ::2])
    stacked = np.stack(grey)
    gx = _conv2_same(stacked, PREWITT_X)
    gy = _conv2_same(stacked, PREWITT_X.T)
    magnitude = np.sqrt(gx**2 + gy**2)
    m1, m2 = magnitude
    quality = (2 * m1 * m2 + GMSD_T) / (m1**2 + m2**2 + GMSD_T)
    return _out(quality.std(axis=(-2, -1), ddof=1))
