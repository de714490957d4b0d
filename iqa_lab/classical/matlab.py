"""The MATLAB functions the original metric implementations call, in float64 NumPy: ``rgb2gray``
on uint8, ``round`` (half away from zero), ``fspecial('gaussian')``, ``filter2`` / ``imfilter``
with their padding rules, and ``imresize`` (bicubic with antialiasing). Results match MATLAB to
floating-point rounding; the original metrics' published outputs depend on each of them."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# MATLAB rgb2gray: the rows of inv([1 0.956 0.621; 1 -0.272 -0.647; 1 -1.106 1.703]) it uses.
RGB2GRAY_WEIGHTS = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])


def matlab_round(values: np.ndarray) -> np.ndarray:
    """MATLAB ``round``: halves away from zero (``round(2.5) = 3``, ``round(-2.5) = -3``), where
    NumPy rounds halves to even."""
    values = np.asarray(values, dtype=np.float64)
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def rgb2gray(image: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` of an ``(..., H, W, 3)`` uint8 image: the weighted sum rounded back to
    uint8, returned as float64 on 0..255. A single-channel image is returned as it is."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(
            f"rgb2gray expects uint8 pixels as MATLAB's originals read them, got {image.dtype}"
        )
    if image.ndim == 2 or image.shape[-1] == 1:
        return image.reshape(image.shape[:2]).astype(np.float64)
    return np.clip(matlab_round(image[..., :3].astype(np.float64) @ RGB2GRAY_WEIGHTS), 0, 255)


def fspecial_gaussian(size: int, sigma: float) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)``: normalised, tiny tails (< eps x max) zeroed."""
    half = (size - 1) / 2
    x = np.arange(-half, half + 1)
    kernel = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    kernel[kernel < np.finfo(np.float64).eps * kernel.max()] = 0
    return kernel / kernel.sum()


def filter2(kernel: np.ndarray, image: np.ndarray, shape: str = "same") -> np.ndarray:
    """MATLAB ``filter2(kernel, image, shape)``: correlation, zero padding; ``shape`` is 'same' or
    'valid'. Works on the last two axes, so a batch ``(N, H, W)`` is filtered at once. A rank-1
    kernel runs as ``filter2`` runs it: split by SVD, then ``conv2(hcol, hrow, image)``."""
    if shape not in ("same", "valid"):
        raise ValueError(f"filter2 shape must be 'same' or 'valid', got '{shape}'")
    out = _filter(image, kernel, mode="constant", convolve=True)
    if shape == "valid":
        kh, kw = kernel.shape
        top, left = (kh - 1) // 2, (kw - 1) // 2
        h, w = image.shape[-2] - kh + 1, image.shape[-1] - kw + 1
        out = out[..., top : top + h, left : left + w]
    return out


def imfilter_replicate(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """MATLAB ``imfilter(image, kernel, 'replicate')`` (correlation, 'same' size); a rank-1
    kernel of 49 or more taps runs as ``imfilter`` runs it: two 1-D correlations by the SVD."""
    return _filter(image, kernel, mode="nearest", convolve=False)


def imfilter_box_symmetric(image: np.ndarray, size: int) -> np.ndarray:
    """MATLAB ``imfilter(image, ones(size) / size^2, 'symmetric', 'same')``: the box mean MATLAB
    anchors at ``floor((size + 1) / 2)``, mirrored borders (used before ``ssim.m``'s and
    ``msssim.m``'s downsampling)."""
    image = np.asarray(image, dtype=np.float64)
    before = (size + 1) // 2 - 1
    pad = [(0, 0)] * (image.ndim - 2) + [(before, size - 1 - before)] * 2
    padded = np.pad(image, pad, mode="symmetric")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(-2, -1))
    return windows.mean(axis=(-2, -1))


def _filter(image: np.ndarray, kernel: np.ndarray, mode: str, convolve: bool) -> np.ndarray:
    """2-D correlation of the last two axes with an odd-sized kernel, centred as MATLAB centres
    it. A rank-1 kernel runs as MATLAB runs it, column vector first: ``filter2`` splits the
    rotated kernel and convolves (``convolve=True``), ``imfilter`` splits the kernel and
    correlates. The floating-point leftovers in flat regions then match MATLAB's more often."""
    image = np.asarray(image, dtype=np.float64)
    if kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError("only odd-sized kernels are centred alike in MATLAB and SciPy")
    pass_1d = ndimage.convolve1d if convolve else ndimage.correlate1d
    column, row = _separate(kernel[::-1, ::-1] if convolve else kernel)
    if column is not None:
        out = pass_1d(image, column, axis=-2, mode=mode, cval=0.0)
        return pass_1d(out, row, axis=-1, mode=mode, cval=0.0)
    full = kernel.reshape((1,) * (image.ndim - 2) + kernel.shape)
    return ndimage.correlate(image, full, mode=mode, cval=0.0)


def _separate(kernel: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """MATLAB's split of a rank-1 kernel: ``hcol = u(:,1) sqrt(s1)``, ``hrow = v(:,1)' sqrt(s1)``
    (rank by ``s > numel-side x s1 x eps``); ``(None, None)`` for any other kernel."""
    u, s, vt = np.linalg.svd(kernel)
    tolerance = max(kernel.shape) * s[0] * np.finfo(np.float64).eps
    if (s > tolerance).sum() != 1 or min(kernel.shape) == 1:
        return None, None
    return u[:, 0] * np.sqrt(s[0]), vt[0] * np.sqrt(s[0])


def _cubic(x: np.ndarray) -> np.ndarray:
    absx = np.abs(x)
    absx2, absx3 = absx**2, absx**3
    return (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1) + (
        -0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2
    ) * ((absx > 1) & (absx <= 2))


def _contributions(in_length: int, out_length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """imresize's ``contributions``: per output sample, the input indices (0-based, mirrored at
    the borders) and their normalised bicubic weights, antialiased when shrinking."""
    kernel_width = 4.0
    if scale < 1:
        kernel_width /= scale

        def weight(x):
            return scale * _cubic(scale * x)
    else:
        weight = _cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = int(np.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    weights = weight(u[:, None] - indices)
    weights = weights / _sequential_sum(weights.T)[:, None]
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    used = np.any(weights != 0, axis=0)
    return weights[:, used], indices[:, used]


def imresize(image: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(image, scale)`` of a float image (bicubic, antialiasing on): output size
    ``ceil(scale * size)``, rows first, float64 throughout. Works on the last two axes."""
    image = np.asarray(image, dtype=np.float64)
    out = image
    for axis in (-2, -1):  # equal scales: MATLAB resizes dimension 1 first
        length = out.shape[axis]
        weights, indices = _contributions(length, int(np.ceil(scale * length)), scale)
        moved = np.moveaxis(out, axis, -1)
        moved = _sequential_sum(
            [moved[..., indices[:, k]] * weights[:, k] for k in range(len(weights[0]))]
        )
        out = np.moveaxis(moved, -1, axis)
    return out


def _sequential_sum(terms) -> np.ndarray:
    """``terms[0] + terms[1] + ...`` left to right, as MATLAB's loops add (NumPy's pairwise sums
    round differently in the last bit, which flat regions turn into sign flips)."""
    total = np.array(terms[0], dtype=np.float64, copy=True)
    for term in terms[1:]:
        total += term
    return total
