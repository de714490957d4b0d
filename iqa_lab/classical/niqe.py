"""NIQE (Mittal, Soundararajan & Bovik, SPL 2013): the distance between a multivariate Gaussian of
an image's patch statistics and one fitted on pristine photos (lower = better).

Features as the release's ``computequality.m`` / ``computefeature.m``: grey = MATLAB ``rgb2gray``
of the uint8 image, cropped to a multiple of the patch size; two scales, the second by MATLAB
``imresize(grey, 0.5)`` (bicubic, antialiased, float64); MSCN over the whole image with a 7x7
Gaussian window (σ 7/6, replicate padding, C = 1 on 0..255); per patch (``patch`` px, then
``patch / 2`` on the half scale) the AGGD of the MSCN values ([α, (βl + βr) / 2]) and of the four
``circshift`` products inside the patch ([α, η, βl, βr]), with β = σ √(Γ(1/α) / Γ(3/α)) (not
squared). The image's Gaussian: the mean over patches ignoring NaN, the covariance over patches
without NaN (MATLAB ``nanmean`` / ``nancov``); the score √(Δμᵀ pinv((Σ₁ + Σ₂) / 2) Δμ).

Pristine models:
- ``original_model``: the release's ``modelparameters.mat`` (96 px patches), shipped as BasicSR's
  ``niqe_pris_params.npz`` (same numbers; ``classical/data/NOTICE.md``). Metric ``niqe_original``.
- ``fit_pristine_model``: OUR fit, on the pristine photos that installed packages ship
  (``iqa_lab.data.pristine``), keeping the patches sharper than ``sharpness`` x the image's
  sharpest patch as the NIQE training code does. These photos are also the contents of the
  synthetic database: on ``data=synthetic`` the model has seen the contents (never their scores).
  Metric ``niqe``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from iqa_lab.classical import nss
from iqa_lab.classical.matlab import imresize, rgb2gray
from iqa_lab.errors import ConfigError

VERSION = 2  # bump when the feature code changes: cached fits and scores start afresh
ORIGINAL_PATCH = 96
ORIGINAL_PARAMS = Path(__file__).resolve().parent / "data" / "niqe_pris_params.npz"


def _blocks(image: np.ndarray, size: int) -> np.ndarray:
    """``(rows, cols, size, size)`` view of an image whose sides are multiples of ``size``;
    flattened in MATLAB ``blkproc``'s order (down the columns first) by ``_flat``."""
    h, w = image.shape
    return image.reshape(h // size, size, w // size, size).swapaxes(1, 2)


def _flat(blocks: np.ndarray) -> np.ndarray:
    return blocks.swapaxes(0, 1).reshape(-1, *blocks.shape[2:])


def _block_features(structdis: np.ndarray) -> np.ndarray:
    """``computefeature.m`` of a stack of patches ``(n, s, s)``: ``(n, 18)``."""
    alpha, left, right = nss.aggd_fit(structdis)
    with np.errstate(invalid="ignore"):
        beta = nss.beta_factor(alpha)
    feats = [alpha, (left + right) * beta / 2]
    for pair in nss.neighbour_products(structdis):
        alpha, left, right = nss.aggd_fit(pair)
        with np.errstate(invalid="ignore", divide="ignore"):
            beta = nss.beta_factor(alpha)
            ratio = nss.gamma_fn(2 / alpha) / nss.gamma_fn(1 / alpha)
        feats += [alpha, (right - left) * beta * ratio, left * beta, right * beta]
    return np.stack(feats, axis=-1)


def patch_features(image: np.ndarray, patch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n_patches, 36)`` features of a uint8 RGB image and each patch's sharpness (mean local
    σ at the first scale, as the release's training code measures it)."""
    grey = rgb2gray(image)
    h, w = grey.shape
    if h < patch_size or w < patch_size:
        raise ConfigError(
            f"NIQE with {patch_size}px patches needs an image of at least "
            f"{patch_size}x{patch_size}, got {w}x{h}: use smaller patches "
            f"(model.metric=niqe model.niqe.patch_size=...)"
        )
    if patch_size % 2:
        raise ConfigError(
            f"NIQE patch size must be even (halved at the second scale), got {patch_size}"
        )
    grey = grey[: h - h % patch_size, : w - w % patch_size]
    per_scale, sharpness = [], None
    for size in (patch_size, patch_size // 2):
        structdis, sigma = nss.mscn(grey, padding="replicate")
        per_scale.append(_block_features(_flat(_blocks(structdis, size))))
        if sharpness is None:
            sharpness = _flat(_blocks(sigma, size)).mean(axis=(-2, -1))
        grey = imresize(grey, 0.5)
    return np.hstack(per_scale), sharpness


def fit_pristine_model(
    photos: Sequence[np.ndarray], patch_size: int, sharpness: float
) -> dict[str, np.ndarray]:
    """Mean and covariance of the sharp patches' features over pristine photos."""
    kept = []
    for image in photos:
        feats, sharp = patch_features(image, patch_size)
        keep = (sharp > sharpness * sharp.max()) & np.isfinite(feats).all(axis=1)
        kept.append(feats[keep])
    feats = np.vstack(kept)
    return {
        "mu": feats.mean(axis=0),
        "cov": np.cov(feats, rowvar=False),
        "patches": np.array(len(feats)),
    }


def original_model() -> dict[str, np.ndarray]:
    """The release's pristine parameters (``mu_prisparam``, ``cov_prisparam``; 96 px patches)."""
    with np.load(ORIGINAL_PARAMS) as params:
        return {"mu": np.ravel(params["mu_pris_param"]), "cov": params["cov_pris_param"]}


def score(image: np.ndarray, model: dict[str, np.ndarray], patch_size: int) -> float:
    """NIQE of one uint8 RGB image against a pristine model (lower = better); NaN when fewer
    than two patches have finite features (a flat image has none)."""
    feats, _ = patch_features(image, patch_size)
    complete = feats[np.isfinite(feats).all(axis=1)]
    if len(complete) < 2:
        return float("nan")
    diff = model["mu"] - np.nanmean(np.where(np.isfinite(feats), feats, np.nan), axis=0)
    cov = (model["cov"] + np.cov(complete, rowvar=False)) / 2
    return float(np.sqrt(diff @ np.linalg.pinv(cov) @ diff))


def original_score(image: np.ndarray) -> float:
    """NIQE of the release: its pristine parameters, 96 px patches."""
    return score(image, original_model(), ORIGINAL_PATCH)
