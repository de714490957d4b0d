"""Natural-scene statistics shared by BRISQUE and NIQE, as their MATLAB releases compute them:
MSCN coefficients, the generalized Gaussian (GGD) and asymmetric GGD (AGGD) fits by the
releases' grid search (shape 0.2:0.001:10, the first best grid point), and the four
neighbour-product maps by ``circshift``.

Flat regions: a window of equal pixels has MSCN coefficient exactly 0, but floating-point
filtering leaves about ±1e-14 there, and its sign decides whether it counts as a left or a right
value of the AGGD fits (and of the neighbour products, positive whenever two leftovers share a
sign). Rule here: follow MATLAB's arithmetic rather than the exact one — the window normalised
twice as the releases do, split by SVD and applied column then row as ``filter2`` / ``imfilter``
apply a rank-1 kernel (``iqa_lab.classical.matlab``) — and keep the leftovers. This reproduces
the published scores of images with few flat pixels; on large flat areas the leftovers still
differ from MATLAB's in places (README, "Classical metrics", states the measured error).
Snapping ``|c| < 1e-10`` to 0 instead was measured worse on two of the five published BRISQUE
values and better on two (README).
"""

from __future__ import annotations

import numpy as np
from scipy.special import gamma as gamma_fn

from iqa_lab.classical.matlab import filter2, fspecial_gaussian, imfilter_replicate

# Both releases normalise fspecial's window once more (window / sum(sum(window))): the last bits
# of the weights decide the floating-point leftovers in flat regions.
_WINDOW = fspecial_gaussian(7, 7 / 6)
MSCN_WINDOW = _WINDOW / _WINDOW.sum()
# MATLAB's 0.2:0.001:10 (the colon operator gives the same values to the last bit or so).
SHAPES = 0.2 + 0.001 * np.arange(9801)
_GGD_RATIO = gamma_fn(1 / SHAPES) * gamma_fn(3 / SHAPES) / gamma_fn(2 / SHAPES) ** 2
_AGGD_RATIO = gamma_fn(2 / SHAPES) ** 2 / (gamma_fn(1 / SHAPES) * gamma_fn(3 / SHAPES))
# circshift amounts of the four neighbour products: horizontal, vertical, two diagonals.
SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))


def mscn(grey: np.ndarray, padding: str) -> tuple[np.ndarray, np.ndarray]:
    """``(structdis, sigma)`` of a grey image on 0..255: ``(I - μ) / (σ + 1)`` with a 7x7
    Gaussian window (σ = 7/6). ``padding``: 'zero' (BRISQUE's ``filter2``) or 'replicate'
    (NIQE's ``imfilter``)."""
    if padding == "zero":
        mu, second = (filter2(MSCN_WINDOW, x, "same") for x in (grey, grey * grey))
    elif padding == "replicate":
        mu, second = (imfilter_replicate(x, MSCN_WINDOW) for x in (grey, grey * grey))
    else:
        raise ValueError(f"padding must be 'zero' or 'replicate', got '{padding}'")
    sigma = np.sqrt(np.abs(second - mu * mu))
    structdis = (grey - mu) / (sigma + 1)
    return structdis, sigma


def neighbour_products(structdis: np.ndarray) -> list[np.ndarray]:
    """``structdis .* circshift(structdis, shift)`` for the four ``SHIFTS`` (last two axes)."""
    return [structdis * np.roll(structdis, shift, axis=(-2, -1)) for shift in SHIFTS]


def _grid_shape(ratio: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The grid shape whose table value is nearest each ratio (MATLAB ``min``: first on ties);
    NaN where the ratio is NaN."""
    ratio = np.asarray(ratio, dtype=np.float64)
    index = np.abs(np.nan_to_num(ratio, nan=0.0)[..., None] - table).argmin(axis=-1)
    return np.where(np.isfinite(ratio), SHAPES[index], np.nan)


def ggd_fit(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``estimateggdparam``: (shape α, standard deviation σ) over the last two axes."""
    sigma_sq = np.mean(values**2, axis=(-2, -1))
    mean_abs = np.mean(np.abs(values), axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = _grid_shape(sigma_sq / mean_abs**2, _GGD_RATIO)
    return alpha, np.sqrt(sigma_sq)


def aggd_fit(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``estimateaggdparam``: (shape α, left σ, right σ) over the last two axes. A side without
    values gives NaN, as MATLAB's mean of an empty vector."""
    left, right = values < 0, values > 0
    squares = values**2
    with np.errstate(divide="ignore", invalid="ignore"):
        left_std = np.sqrt((squares * left).sum(axis=(-2, -1)) / left.sum(axis=(-2, -1)))
        right_std = np.sqrt((squares * right).sum(axis=(-2, -1)) / right.sum(axis=(-2, -1)))
        gammahat = left_std / right_std
        rhat = np.mean(np.abs(values), axis=(-2, -1)) ** 2 / np.mean(squares, axis=(-2, -1))
        rhatnorm = rhat * (gammahat**3 + 1) * (gammahat + 1) / (gammahat**2 + 1) ** 2
    return _grid_shape(rhatnorm, _AGGD_RATIO), left_std, right_std


def beta_factor(alpha: np.ndarray) -> np.ndarray:
    """``sqrt(gamma(1/α) / gamma(3/α))``: turns an AGGD side's σ into its scale β."""
    return np.sqrt(gamma_fn(1 / alpha) / gamma_fn(3 / alpha))
