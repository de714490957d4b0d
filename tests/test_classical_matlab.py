"""The MATLAB functions the original metrics call, and the metrics themselves, against values
derived by hand and against direct transliterations of the MATLAB code (plain loops and
``scipy.signal`` here, no shared code) on generated images: these hold without the calibration
images of tests/test_classical_calibration.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import correlate2d
from scipy.special import gamma

from iqa_lab import classical
from iqa_lab.classical import brisque, fr, matlab, niqe, nss


def _textured(shape=(48, 64), seed=0) -> np.ndarray:
    """A uint8 RGB image with smooth structure and noise (no flat windows)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    base = 120 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0)
    rgb = base[..., None] + rng.normal(0, 12, (*shape, 3)) + np.array([10, 0, -10])
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def test_matlab_round_rounds_halves_away_from_zero():
    assert matlab.matlab_round(np.array([0.5, 1.5, 2.5, -0.5, -2.5, 2.4999])).tolist() == [
        1, 2, 3, -1, -3, 2,
    ]  # fmt: skip


def test_rgb2gray_equals_matlab_on_uint8():
    # MATLAB: rgb2gray(uint8(cat(3, 255, 0, 0))) = 76, green 150, blue 29, grey stays grey.
    pixels = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]]], np.uint8)
    assert matlab.rgb2gray(pixels).tolist() == [[76.0, 150.0, 29.0, 128.0]]
    image = np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    r, g, b = (image[..., i].astype(np.float64) for i in range(3))
    exact = 0.298936021293775 * r + 0.587043074451121 * g + 0.114020904255103 * b
    assert np.array_equal(matlab.rgb2gray(image), np.floor(exact + 0.5))


def test_fspecial_gaussian_is_normalised_and_symmetric():
    kernel = matlab.fspecial_gaussian(7, 7 / 6)
    x = np.arange(-3, 4)
    expected = np.exp(-(x[:, None] ** 2 + x[None] ** 2) / (2 * (7 / 6) ** 2))
    np.testing.assert_allclose(kernel, expected / expected.sum(), rtol=1e-14)


def test_filter2_is_correlation_with_zero_padding():
    rng = np.random.default_rng(2)
    image, kernel = rng.normal(size=(20, 17)), rng.normal(size=(5, 3))  # not separable
    np.testing.assert_allclose(
        matlab.filter2(kernel, image, "same"), correlate2d(image, kernel, "same"), atol=1e-12
    )
    np.testing.assert_allclose(
        matlab.filter2(kernel, image, "valid"), correlate2d(image, kernel, "valid"), atol=1e-12
    )
    gaussian = matlab.fspecial_gaussian(11, 1.5)  # separable: MATLAB's two 1-D passes
    np.testing.assert_allclose(
        matlab.filter2(gaussian, image, "valid"), correlate2d(image, gaussian, "valid"), atol=1e-12
    )


def _imresize_1d(values: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB imresize's ``contributions`` + sum, one output sample at a time."""
    n = len(values)
    width = 4 / scale if scale < 1 else 4

    def cubic(t):
        t = abs(t)
        if t <= 1:
            return 1.5 * t**3 - 2.5 * t**2 + 1
        return -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2 if t <= 2 else 0.0

    out = []
    for x in range(1, math.ceil(scale * n) + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = range(left, left + math.ceil(width) + 2)
        weights = [scale * cubic(scale * (u - j)) if scale < 1 else cubic(u - j) for j in taps]
        mirrored = [values[min(max(j, 1 - j), 2 * n + 1 - j) - 1] for j in taps]
        out.append(sum(w * v for w, v in zip(weights, mirrored)) / sum(weights))
    return np.array(out)


def test_imresize_equals_matlab_bicubic_with_antialiasing():
    ramp = np.tile(np.arange(1.0, 17.0)[:, None], (1, 3))  # 16 rows
    half = matlab.imresize(ramp, 0.5)
    assert half.shape == (8, 2)  # ceil(0.5 * size)
    # The cubic kernel reproduces a ramp away from the borders: row x samples u = 2x - 0.5.
    np.testing.assert_allclose(half[2:6, 0], [5.5, 7.5, 9.5, 11.5], atol=1e-12)
    assert matlab.imresize(np.ones((5, 5)), 0.5).shape == (3, 3)
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 255, (23, 18))
    expected = np.array([_imresize_1d(col, 0.5) for col in image.T]).T
    expected = np.array([_imresize_1d(row, 0.5) for row in expected])
    np.testing.assert_allclose(matlab.imresize(image, 0.5), expected, atol=1e-10)
    np.testing.assert_allclose(matlab.imresize(np.full((9, 7), 77.0), 0.5), 77.0, atol=1e-12)


def _ssim_maps(x, y):
    window = matlab.fspecial_gaussian(11, 1.5)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = correlate2d(x, window, "valid"), correlate2d(y, window, "valid")
    s11 = correlate2d(x * x, window, "valid") - mu1**2
    s22 = correlate2d(y * y, window, "valid") - mu2**2
    s12 = correlate2d(x * y, window, "valid") - mu1 * mu2
    cs = (2 * s12 + c2) / (s11 + s22 + c2)
    return (2 * mu1 * mu2 + c1) / (mu1**2 + mu2**2 + c1) * cs, cs


def _grey(image):
    return matlab.rgb2gray(image)


def test_psnr_ssim_ms_ssim_gmsd_equal_direct_transliterations():
    reference = _textured((192, 256))
    noise = np.random.default_rng(4).normal(0, 10, reference.shape)
    distorted = np.clip(reference + noise, 0, 255).astype(np.uint8)
    x, y = _grey(distorted), _grey(reference)
    mse = np.mean((distorted.astype(float) - reference) ** 2)
    assert classical.score("psnr", distorted, reference) == pytest.approx(
        10 * np.log10(255**2 / mse), abs=1e-12
    )
    ssim_map, _ = _ssim_maps(x, y)
    assert classical.score("ssim", distorted, reference) == pytest.approx(
        ssim_map.mean(), abs=1e-12
    )
    weights = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
    mcs, xs, ys = [], x, y
    for _ in range(5):
        ssim_map, cs = _ssim_maps(xs, ys)
        mcs.append(cs.mean())
        xs = (xs[0::2, 0::2] + xs[1::2, 0::2] + xs[0::2, 1::2] + xs[1::2, 1::2]) / 4
        ys = (ys[0::2, 0::2] + ys[1::2, 0::2] + ys[0::2, 1::2] + ys[1::2, 1::2]) / 4
    w = weights / weights.sum()
    assert classical.score("ms_ssim", distorted, reference) == pytest.approx(
        np.dot(mcs[:4], w[:4]) + ssim_map.mean() * w[4], abs=1e-12
    )
    product = np.prod(np.array(mcs[:4]) ** weights[:4]) * ssim_map.mean() ** weights[4]
    assert classical.score("ms_ssim_product", distorted, reference) == pytest.approx(
        product, abs=1e-12
    )
    prewitt = np.array([[1, 0, -1]] * 3) / 3
    maps = []
    for g in (x, y):
        g = (g[0::2, 0::2] + g[1::2, 0::2] + g[0::2, 1::2] + g[1::2, 1::2]) / 4
        gx = correlate2d(g, prewitt[::-1, ::-1], "same")
        gy = correlate2d(g, prewitt.T[::-1, ::-1], "same")
        maps.append(np.hypot(gx, gy))
    quality = (2 * maps[0] * maps[1] + 170) / (maps[0] ** 2 + maps[1] ** 2 + 170)
    assert classical.score("gmsd", distorted, reference) == pytest.approx(
        quality.std(ddof=1), abs=1e-12
    )


def test_metrics_take_batches():
    reference = np.stack([_textured((192, 192), seed) for seed in range(2)])
    distorted = np.clip(reference.astype(int) + 9, 0, 255).astype(np.uint8)
    for metric in (fr.psnr, fr.ssim, fr.ms_ssim, fr.gmsd):
        batch = metric(distorted, reference)
        singles = [metric(d, r) for d, r in zip(distorted, reference)]
        np.testing.assert_allclose(batch, singles, rtol=1e-12)


def _grid_fit(ratio, table):
    shapes = np.arange(0.2, 10.0005, 0.001)
    return shapes[np.argmin(np.abs(ratio - table(shapes)))]


def _aggd(vec):
    """``estimateaggdparam.m``, line by line."""
    left = np.sqrt(np.mean(vec[vec < 0] ** 2))
    right = np.sqrt(np.mean(vec[vec > 0] ** 2))
    gammahat = left / right
    rhat = np.mean(np.abs(vec)) ** 2 / np.mean(vec**2)
    rhatnorm = rhat * (gammahat**3 + 1) * (gammahat + 1) / (gammahat**2 + 1) ** 2
    alpha = _grid_fit(rhatnorm, lambda g: gamma(2 / g) ** 2 / (gamma(1 / g) * gamma(3 / g)))
    return alpha, left, right


def _mscn(grey, mode):
    window = matlab.fspecial_gaussian(7, 7 / 6)
    pad = 3
    padded = np.pad(grey, pad, mode="constant" if mode == "zero" else "edge")
    mu = correlate2d(padded, window, "valid")
    sigma = np.sqrt(np.abs(correlate2d(padded**2, window, "valid") - mu**2))
    return (grey - mu) / (sigma + 1)


def test_brisque_features_equal_brisque_feature_m():
    image = _textured((64, 80), seed=5)
    grey, expected = _grey(image), []
    for _ in range(2):
        structdis = _mscn(grey, "zero")
        vec = structdis.ravel()
        sigma_sq = np.mean(vec**2)
        rho = sigma_sq / np.mean(np.abs(vec)) ** 2
        alpha = _grid_fit(rho, lambda g: gamma(1 / g) * gamma(3 / g) / gamma(2 / g) ** 2)
        expected += [alpha, sigma_sq]
        for shift in ((0, 1), (1, 0), (1, 1), (-1, 1)):
            pair = structdis * np.roll(structdis, shift, axis=(0, 1))
            a, left, right = _aggd(pair.ravel())
            const = np.sqrt(gamma(1 / a)) / np.sqrt(gamma(3 / a))
            expected += [a, (right - left) * gamma(2 / a) / gamma(1 / a) * const, left**2, right**2]
        grey = matlab.imresize(grey, 0.5)
    np.testing.assert_allclose(brisque.features(image), expected, rtol=1e-9, atol=1e-12)


def test_brisque_scaling_prints_as_the_release_does():
    model = brisque.original_model()
    assert model.sv.shape == (774, 36) and model.gamma == 0.05 and model.rho == -153.591
    feats = np.array(model.low + 0.123456789 * (model.high - model.low))
    scaled = model.scale(feats[None])[0]
    printed = np.array([float(f"{v:f}") for v in feats])
    exact = -1 + 2 * (printed - model.low) / (model.high - model.low)
    assert scaled.tolist() == [float(f"{v:g}") for v in exact]  # 6 significant digits


def test_niqe_features_equal_computefeature_m():
    image = _textured((96, 192), seed=6)
    grey = _grey(image)
    per_scale = []
    for size in (48, 24):
        structdis = _mscn(grey, "replicate")
        rows = []
        for c in range(grey.shape[1] // size):  # blkproc: down the columns first
            for r in range(grey.shape[0] // size):
                block = structdis[r * size : (r + 1) * size, c * size : (c + 1) * size]
                a, left, right = _aggd(block.ravel())
                beta = np.sqrt(gamma(1 / a) / gamma(3 / a))
                feat = [a, (left + right) * beta / 2]
                for shift in ((0, 1), (1, 0), (1, 1), (-1, 1)):
                    pair = block * np.roll(block, shift, axis=(0, 1))
                    a, left, right = _aggd(pair.ravel())
                    beta = np.sqrt(gamma(1 / a) / gamma(3 / a))
                    mean = (right - left) * beta * gamma(2 / a) / gamma(1 / a)
                    feat += [a, mean, left * beta, right * beta]
                rows.append(feat)
        per_scale.append(rows)
        grey = matlab.imresize(grey, 0.5)
    feats, _ = niqe.patch_features(image, 48)
    np.testing.assert_allclose(feats, np.hstack(per_scale), rtol=1e-9, atol=1e-12)


def test_niqe_original_uses_the_release_parameters():
    model = niqe.original_model()
    assert model["mu"].shape == (36,) and model["cov"].shape == (36, 36)
    np.testing.assert_allclose(model["cov"], model["cov"].T)
    # modelparameters.mat's first means: the MSCN shape α and β of pristine 96 px patches.
    assert 2.0 < model["mu"][0] < 3.0 and 0.2 < model["mu"][1] < 1.0


def test_aggd_fit_picks_the_first_best_grid_point():
    values = np.random.default_rng(7).laplace(size=(1, 200, 200))  # α = 1
    alpha, left, right = nss.aggd_fit(values)
    assert abs(alpha[0] - 1.0) < 0.1 and left[0] == pytest.approx(right[0], rel=0.05)


def test_score_names_and_errors():
    names = classical.names()
    for name in ("psnr", "ssim", "ms_ssim", "fsim", "vif", "gmsd", "brisque_live"):
        assert name in names
    assert "niqe_original" in names and "ssim_piq" in names
    image = _textured()
    with pytest.raises(ValueError, match="full-reference: give the reference"):
        classical.score("ssim", image)
    with pytest.raises(ValueError, match="unknown classical metric 'ssim2'"):
        classical.score("ssim2", image, image)
    with pytest.raises(ValueError, match="must be a path or a uint8 RGB array"):
        classical.score("psnr", image.astype(float), image)
    with pytest.raises(ValueError, match=r"differ in size"):
        classical.score("psnr", image, image[:-1])
