"""VIF (Sheikh & Bovik, TIP 2006) in the wavelet domain, as the original ``vifvec.m``: grey images
(MATLAB ``rgb2gray`` on uint8) decomposed by the steerable pyramid ``buildSpyr(image, 4,
'sp5Filters', 'reflect1')`` (``pyrtools``' port of the same code), subbands [4 7 10 13 16 19 22 25]
of ``ind2wtree``'s order (orientations 0 and 3 of each of the 4 levels), vector GSM with M = 3
(3x3 blocks), σ²ₙ = 0.4; ``vifsub_est_M`` and ``refparams_vecgsm`` follow the original line by
line. Higher = better; 1 for identical images (above 1 for contrast enhancement)."""

from __future__ import annotations

import numpy as np

from iqa_lab.classical.fr import check_pair
from iqa_lab.classical.matlab import rgb2gray

SUBBANDS = (4, 7, 10, 13, 16, 19, 22, 25)
M = 3
SIGMA_NSQ = 0.4
LEVELS = 4
ORIENTATIONS = 6
TOLERANCE = 1e-15  # vifsub_est_M's tolerance for zero variance


def _wtree(grey: np.ndarray) -> dict[int, np.ndarray]:
    """``ind2wtree(buildSpyr(...))``: subbands numbered 1..26 from the residual lowpass (1) to the
    residual highpass (26), coarse to fine, orientations in reverse."""
    import pyrtools as pt

    pyramid = pt.pyramids.SteerablePyramidSpace(
        grey, height=LEVELS, order=ORIENTATIONS - 1, edge_type="reflect1"
    )
    bands = [pyramid.pyr_coeffs["residual_highpass"]]
    bands += [
        pyramid.pyr_coeffs[(level, band)] for level in range(LEVELS) for band in range(ORIENTATIONS)
    ]
    bands.append(pyramid.pyr_coeffs["residual_lowpass"])
    return {len(bands) - i: band for i, band in enumerate(bands)}


def _window_size(sub: int) -> int:
    return 2 ** int(np.ceil((sub - 1) / 6)) + 1


def _crop(y: np.ndarray) -> np.ndarray:
    return y[: y.shape[0] // M * M, : y.shape[1] // M * M]


def _distortion_channel(y: np.ndarray, yn: np.ndarray, sub: int) -> tuple[np.ndarray, np.ndarray]:
    """``vifsub_est_M`` for one subband: the gain ``g`` and the noise variance ``vv`` per block."""
    import pyrtools as pt

    winsize = _window_size(sub)
    win = np.ones((winsize, winsize))
    y, yn = _crop(y), _crop(yn)
    start = (M // 2, M // 2)
    stop = (y.shape[0] - int(np.ceil(M / 2)) + 1, y.shape[1] - int(np.ceil(M / 2)) + 1)

    def corr(image, filt):
        return pt.corrDn(image, filt, "reflect1", (M, M), start, stop)

    n = win.sum()
    mean_x, mean_y = corr(y, win / n), corr(yn, win / n)
    cov_xy = corr(y * yn, win) - n * mean_x * mean_y
    ss_x = corr(y**2, win) - n * mean_x**2
    ss_y = corr(yn**2, win) - n * mean_y**2
    ss_x[ss_x < 0] = 0
    ss_y[ss_y < 0] = 0
    g = cov_xy / (ss_x + TOLERANCE)
    vv = (ss_y - g * cov_xy) / n
    flat_x = ss_x < TOLERANCE
    g[flat_x] = 0
    vv[flat_x] = ss_y[flat_x]
    flat_y = ss_y < TOLERANCE
    g[flat_y] = 0
    vv[flat_y] = 0
    negative = g < 0
    vv[negative] = ss_y[negative]
    g[negative] = 0
    vv[vv <= TOLERANCE] = TOLERANCE
    return g, vv


def _reference_gsm(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``refparams_vecgsm`` for one subband: the S field and the eigenvalues of C_U."""
    y = _crop(y)
    h, w = y.shape
    overlapping = np.stack(
        [
            y[k : h - (M - k) + 1, j : w - (M - j) + 1].ravel(order="F")
            for j in range(M)
            for k in range(M)
        ]
    )
    centred = overlapping - overlapping.mean(axis=1, keepdims=True)
    cu = centred @ centred.T / overlapping.shape[1]
    blocks = np.stack([y[k::M, j::M].ravel(order="F") for j in range(M) for k in range(M)])
    ss = np.sum(np.linalg.inv(cu) @ blocks * blocks, axis=0) / (M * M)
    ss = ss.reshape((h // M, w // M), order="F")
    return ss, np.linalg.eigvalsh(cu)


def _vif_grey(reference: np.ndarray, distorted: np.ndarray) -> float:
    org, dist = _wtree(reference), _wtree(distorted)
    num = den = 0.0
    for sub in SUBBANDS:
        g, vv = _distortion_channel(org[sub], dist[sub], sub)
        ss, eigenvalues = _reference_gsm(org[sub])
        offset = int(np.ceil((_window_size(sub) - 1) / 2 / M))
        inner = (slice(offset, -offset or None), slice(offset, -offset or None))
        g, vv, ss = g[inner], vv[inner], ss[inner]
        for lam in eigenvalues:
            num += np.sum(np.log2(1 + g * g * ss * lam / (vv + SIGMA_NSQ)))
            den += np.sum(np.log2(1 + ss * lam / SIGMA_NSQ))
    return float(num / den)


def vif(distorted: np.ndarray, reference: np.ndarray):
    """``vifvec`` of uint8 RGB images (a float), or of batches (an ``(N,)`` array)."""
    check_pair(distorted, reference, "vif")
    x, y = rgb2gray(distorted), rgb2gray(reference)
    if x.ndim == 2:
        return _vif_grey(y, x)
    return np.array([_vif_grey(r, d) for r, d in zip(y, x)])
