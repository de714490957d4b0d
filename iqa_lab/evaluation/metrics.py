"""IQA metrics as pure functions over numpy arrays: the one definition every part of iqa_lab uses
(the model's epoch metrics, results.json, tables, reports).

- Correlations: SRCC, KRCC, PLCC (raw), and PLCC / RMSE after the VQEG 4- or 5-parameter logistic
  mapping of predictions onto MOS (``plcc_fitted``, ``rmse_fitted``).
- Errors: RMSE, MAE, explained variance (EVS, scikit-learn's definition ``1 - Var(y-ŷ)/Var(y)``),
  R² (``1 - SSE/SST``: what QualityNet (2024) prints under the name EVS), pinball (quantile)
  loss at a quantile τ, the slope / intercept of a least-squares line from prediction to MOS, and
  the VQEG outlier ratio (needs each image's MOS standard deviation).
- Uncertainty: percentile bootstrap confidence intervals for SRCC / PLCC (seeded, vectorised), and
  paired tests between two models' predictions on the same images: a paired bootstrap, Williams' t
  and Steiger's Z for dependent correlations sharing the MOS.

Degenerate input (constant, single element, NaN) gives NaN with a RuntimeWarning, never a crash.
The logistic fit is multi-start (a profile grid over centres and steepnesses, then local
refinement of its best points). Without a fit (degenerate input, no more images than parameters)
``plcc_fitted`` / ``rmse_fitted`` and the ``plcc_l4/l5`` of ``full_summary`` are NaN with a warning
(``logistic_fit_failures`` lists them for results.json); ``map_logistic`` (the plots) falls back
to the raw predictions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy import optimize, stats

__all__ = [
    "srcc",
    "krcc",
    "plcc",
    "rmse",
    "mae",
    "evs",
    "r2",
    "pinball",
    "linear_fit",
    "logistic_4",
    "logistic_5",
    "fit_logistic",
    "map_logistic",
    "plcc_fitted",
    "rmse_fitted",
    "logistic_fit_failures",
    "FITTED_PLCC",
    "outlier_ratio",
    "bootstrap_ci",
    "paired_bootstrap",
    "williams_test",
    "steiger_z_test",
    "compare_models",
    "summary",
    "full_summary",
]


def _pair(pred, mos) -> tuple[np.ndarray, np.ndarray]:
    pred, mos = np.asarray(pred, dtype=float).ravel(), np.asarray(mos, dtype=float).ravel()
    if pred.shape != mos.shape:
        raise ValueError(f"prediction and MOS lengths differ: {pred.shape} vs {mos.shape}")
    return pred, mos


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _degenerate(pred: np.ndarray, mos: np.ndarray, metric: str) -> bool:
    if len(pred) < 2 or not (np.isfinite(pred).all() and np.isfinite(mos).all()):
        _warn(f"{metric} is undefined for fewer than two or non-finite values; returning NaN")
        return True
    if np.ptp(pred) == 0 or np.ptp(mos) == 0:
        _warn(
            f"{metric} is undefined for constant input (all predictions or all MOS equal); "
            f"returning NaN"
        )
        return True
    return False


# ---------------------------------------------------------------------------------------------
# Correlations and errors
# ---------------------------------------------------------------------------------------------


def srcc(pred, mos) -> float:
    """Spearman rank-order correlation (ties get average ranks)."""
    pred, mos = _pair(pred, mos)
    return float("nan") if _degenerate(pred, mos, "SRCC") else float(stats.spearmanr(pred, mos)[0])


def krcc(pred, mos) -> float:
    """Kendall rank correlation, tau-b (tie-corrected)."""
    pred, mos = _pair(pred, mos)
    return float("nan") if _degenerate(pred, mos, "KRCC") else float(stats.kendalltau(pred, mos)[0])


def plcc(pred, mos) -> float:
    """Pearson linear correlation of the raw predictions."""
    pred, mos = _pair(pred, mos)
    return float("nan") if _degenerate(pred, mos, "PLCC") else float(stats.pearsonr(pred, mos)[0])


def _finite_or_nan(pred: np.ndarray, mos: np.ndarray, metric: str) -> bool:
    if len(pred) == 0 or not (np.isfinite(pred).all() and np.isfinite(mos).all()):
        _warn(f"{metric} is undefined for empty or non-finite input; returning NaN")
        return False
    return True


def rmse(pred, mos) -> float:
    pred, mos = _pair(pred, mos)
    return (
        float(np.sqrt(np.mean((pred - mos) ** 2)))
        if _finite_or_nan(pred, mos, "RMSE")
        else float("nan")
    )


def mae(pred, mos) -> float:
    pred, mos = _pair(pred, mos)
    return float(np.mean(np.abs(pred - mos))) if _finite_or_nan(pred, mos, "MAE") else float("nan")


def evs(pred, mos) -> float:
    """Explained variance ``1 - Var(mos - pred) / Var(mos)`` (scikit-learn's definition)."""
    pred, mos = _pair(pred, mos)
    if not _finite_or_nan(pred, mos, "EVS") or np.var(mos) == 0:
        if len(mos) and np.var(mos) == 0:
            _warn("EVS is undefined when every MOS is equal; returning NaN")
        return float("nan")
    return float(1.0 - np.var(mos - pred) / np.var(mos))


def r2(pred, mos) -> float:
    """Coefficient of determination ``1 - SSE / SST`` (QualityNet's "EVS" formula)."""
    pred, mos = _pair(pred, mos)
    if not _finite_or_nan(pred, mos, "R2") or np.var(mos) == 0:
        if len(mos) and np.var(mos) == 0:
            _warn("R2 is undefined when every MOS is equal; returning NaN")
        return float("nan")
    return float(1.0 - np.sum((mos - pred) ** 2) / np.sum((mos - mos.mean()) ** 2))


def pinball(pred, mos, quantile: float = 0.5) -> float:
    """Mean quantile (pinball) loss at ``quantile`` τ: ``max(τ(y-ŷ), (τ-1)(y-ŷ))``."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    pred, mos = _pair(pred, mos)
    if not _finite_or_nan(pred, mos, "pinball loss"):
        return float("nan")
    diff = mos - pred
    return float(np.mean(np.maximum(quantile * diff, (quantile - 1) * diff)))


def linear_fit(pred, mos) -> tuple[float, float]:
    """Slope and intercept of the least-squares line ``mos ≈ slope * pred + intercept``."""
    pred, mos = _pair(pred, mos)
    if (
        len(pred) < 2
        or not np.isfinite(pred).all()
        or not np.isfinite(mos).all()
        or np.ptp(pred) == 0
    ):
        _warn("linear fit is undefined for constant, short or non-finite predictions; NaN")
        return float("nan"), float("nan")
    fit = stats.linregress(pred, mos)
    return float(fit.slope), float(fit.intercept)


# ---------------------------------------------------------------------------------------------
# VQEG logistic mappings
# ---------------------------------------------------------------------------------------------


def logistic_4(x, beta1, beta2, beta3, beta4):
    """VQEG 4-parameter: ``(β1 - β2) / (1 + exp(-(x - β3) / |β4|)) + β2``."""
    z = np.clip(-(np.asarray(x, dtype=float) - beta3) / np.abs(beta4), -500, 500)
    return (beta1 - beta2) / (1.0 + np.exp(z)) + beta2


def logistic_5(x, beta1, beta2, beta3, beta4, beta5):
    """VQEG 5-parameter: ``β1 (0.5 - 1 / (1 + exp(β2 (x - β3)))) + β4 x + β5``."""
    x = np.asarray(x, dtype=float)
    z = np.clip(beta2 * (x - beta3), -500, 500)
    return beta1 * (0.5 - 1.0 / (1.0 + np.exp(z))) + beta4 * x + beta5


LOGISTICS: dict[int, Callable] = {4: logistic_4, 5: logistic_5}
# The PLCC after each logistic, under full_summary's keys (table specs name them).
FITTED_PLCC = ("plcc_l4", "plcc_l5")


# The multi-start logistic fit: the grid's centres (quantile steps over the whole range of the
# predictions), its steepnesses, the steepest slope allowed (per standard deviation of the
# predictions) and how many of the best grid points are refined.
CENTRE_STEPS = 20
STEEPNESS_STEPS = 12
MAX_STEEPNESS = 1e3
REFINED_STARTS = 6
STEP_GAPS = 200
REFINE_EVALUATIONS = 400


def _bounds(pred: np.ndarray, params: int) -> tuple[list[float], list[float]]:
    """Bounds that keep the logistic's steepness finite: at most ``MAX_STEEPNESS`` per standard
    deviation of the predictions (a step between two neighbouring predictions is then a steep
    slope, not an infinity)."""
    spread = max(float(np.std(pred)), 1e-12)
    lo, hi = [-np.inf] * params, [np.inf] * params
    if params == 4:  # steepness 1/|β4|; |β4| makes its sign redundant, so keep it positive
        lo[3], hi[3] = spread / MAX_STEEPNESS, np.inf
    else:
        lo[1], hi[1] = -MAX_STEEPNESS / spread, MAX_STEEPNESS / spread
    return lo, hi


def _grid_points(pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centre, steepness) pairs of the starting grid: every ``1/CENTRE_STEPS`` quantile of the
    predictions (both ends included) × ``STEEPNESS_STEPS`` steepnesses up to the bound, plus
    steps (the steepest and a tenth of it) in up to ``STEP_GAPS`` gaps between neighbouring
    predictions (a step that isolates a few outliers sits in one particular gap)."""
    spread = max(float(np.std(pred)), 1e-12)
    centres = np.quantile(pred, np.linspace(0, 1, CENTRE_STEPS + 1))
    steepness = np.geomspace(0.03, MAX_STEEPNESS, STEEPNESS_STEPS) / spread
    c, k = (g.ravel() for g in np.meshgrid(centres, steepness, indexing="ij"))
    values = np.unique(pred)
    gaps = (values[1:] + values[:-1]) / 2
    if len(gaps) > STEP_GAPS:
        gaps = gaps[np.linspace(0, len(gaps) - 1, STEP_GAPS).round().astype(int)]
    for steep in (MAX_STEEPNESS, MAX_STEEPNESS / 10):
        c, k = np.concatenate([c, gaps]), np.concatenate([k, np.full(len(gaps), steep / spread)])
    return c, k


def _grid_starts(pred: np.ndarray, mos: np.ndarray, params: int) -> list[tuple[float, list]]:
    """Least-squares fits at every grid point of ``_grid_points``, best first.

    For a fixed centre and steepness both logistics are linear in their other parameters (the
    5-parameter one in β1, β4, β5, so both signs of β1 come out of the solve; the 4-parameter one
    in β1, β2), which are solved exactly: every grid point is a profile least-squares fit."""
    c, k = _grid_points(pred)
    sig = 1.0 / (1.0 + np.exp(np.clip(-k[:, None] * (pred - c[:, None]), -500, 500)))
    if params == 5:
        basis = np.stack([sig - 0.5, np.broadcast_to(pred, sig.shape), np.ones_like(sig)], 2)
    else:
        basis = np.stack([sig, 1.0 - sig], axis=2)
    transposed = basis.transpose(0, 2, 1)
    coef = (np.linalg.pinv(transposed @ basis) @ (transposed @ mos)[..., None])[..., 0]
    sse = np.sum(((basis @ coef[..., None])[..., 0] - mos) ** 2, axis=1)
    if params == 5:
        starts = np.column_stack([coef[:, 0], k, c, coef[:, 1], coef[:, 2]])
    else:
        starts = np.column_stack([coef[:, 0], coef[:, 1], c, 1.0 / k])
    order = np.argsort(sse)
    return [(float(sse[i]), list(starts[i])) for i in order if np.isfinite(sse[i])]


def _distinct(starts: list[tuple[float, list]], pred: np.ndarray, params: int) -> list[list]:
    """The ``REFINED_STARTS`` best starts that lie in different basins: each one's centre (as a
    quantile of the predictions) or steepness (on a log scale) differs from every better one's
    (the best grid points tend to crowd around one local optimum)."""
    chosen, spread = [], max(float(np.std(pred)), 1e-12)
    for _, start in starts:
        quantile = float(np.mean(pred < start[2]))
        steep = np.log10(spread * (abs(start[1]) if params == 5 else 1.0 / start[3]))
        if all(abs(quantile - q) > 0.05 or abs(steep - s) > 0.5 for q, s, _ in chosen):
            chosen.append((quantile, steep, start))
        if len(chosen) == REFINED_STARTS:
            break
    return [start for _, _, start in chosen]


def _refine(func, pred, mos, start, bounds) -> tuple[float, np.ndarray] | None:
    """Local least squares from ``start``: Levenberg-Marquardt, and a bounded trust-region run
    when that leaves the bounds (the optimum ran off to a step). Each is capped at
    ``REFINE_EVALUATIONS`` evaluations and keeps the point it reached; None when nothing finite
    within the bounds came out."""
    lo, hi = (np.asarray(b, dtype=float) for b in bounds)

    def residuals(beta):
        return func(pred, *beta) - mos

    for method in ("lm", "trf"):
        p0 = np.clip(start, lo, hi)
        options = {"bounds": (lo, hi), "x_scale": "jac"} if method == "trf" else {}
        try:
            fitted = optimize.least_squares(
                residuals, p0, method=method, max_nfev=REFINE_EVALUATIONS, **options
            ).x
        except (ValueError, np.linalg.LinAlgError):
            continue
        if np.all(np.isfinite(fitted)) and np.all(fitted >= lo) and np.all(fitted <= hi):
            return float(np.sum(residuals(fitted) ** 2)), fitted
    return None


def fit_logistic(pred, mos, params: int = 4) -> np.ndarray | None:
    """Least-squares parameters of the ``params``-parameter logistic from predictions to MOS, or
    None (with a warning) for degenerate input or no more images than parameters.

    Multi-start: a profile grid over centres across the whole range of the predictions and
    steepnesses (``_grid_starts``), then local refinement of the ``REFINED_STARTS`` best grid
    points; the lowest sum of squared errors wins (the best grid point if no refinement
    converges)."""
    if params not in LOGISTICS:
        raise ValueError(f"logistic mapping has 4 or 5 parameters, got {params}")
    pred, mos = _pair(pred, mos)
    if _degenerate(pred, mos, "logistic fit"):
        return None
    if len(pred) <= params:
        _warn(
            f"a {params}-parameter logistic needs more than {params} images, got {len(pred)}; "
            f"no fit"
        )
        return None
    func, bounds = LOGISTICS[params], _bounds(pred, params)
    starts = _grid_starts(pred, mos, params)
    if not starts:
        _warn(f"{params}-parameter logistic fit did not converge; no fit")
        return None
    best_sse, best = starts[0][0], np.asarray(starts[0][1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for start in _distinct(starts, pred, params):
            refined = _refine(func, pred, mos, start, bounds)
            if refined is not None and refined[0] < best_sse:
                best_sse, best = refined
    return best


def fit_logistic_4(pred, mos) -> np.ndarray | None:
    """Shorthand for ``fit_logistic(pred, mos, 4)`` (the scatter-plot curve)."""
    return fit_logistic(pred, mos, 4)


def map_logistic(pred, mos, params: int = 4) -> np.ndarray:
    """Predictions mapped onto the MOS scale by the fitted logistic (raw ones if the fit fails)."""
    pred, mos = _pair(pred, mos)
    fitted = fit_logistic(pred, mos, params)
    return pred if fitted is None else LOGISTICS[params](pred, *fitted)


def _fitted(pred, mos, params: int) -> np.ndarray | None:
    """Predictions mapped by the fitted logistic, or None when there is no fit."""
    fitted = fit_logistic(pred, mos, params)
    return None if fitted is None else LOGISTICS[params](pred, *fitted)


def plcc_fitted(pred, mos, params: int = 4) -> float:
    """PLCC after the VQEG logistic mapping (the convention of most IQA tables); NaN (with a
    warning) when the logistic cannot be fitted, e.g. no more images than parameters."""
    pred, mos = _pair(pred, mos)
    mapped = _fitted(pred, mos, params)
    return float("nan") if mapped is None else plcc(mapped, mos)


def rmse_fitted(pred, mos, params: int = 4) -> float:
    """RMSE after the VQEG logistic mapping; NaN when the logistic cannot be fitted."""
    pred, mos = _pair(pred, mos)
    mapped = _fitted(pred, mos, params)
    return float("nan") if mapped is None else rmse(mapped, mos)


def logistic_fit_failures(metrics: dict[str, float]) -> list[str]:
    """The logistic metrics (``…plcc_l4``, ``…plcc_l5``) of ``metrics`` that have no value because
    their fit failed: what results.json records as ``logistic_fit_failed``."""
    return sorted(
        key
        for key, value in metrics.items()
        if key.rsplit("/", 1)[-1] in FITTED_PLCC and not np.isfinite(value)
    )


def outlier_ratio(pred, mos, mos_std, params: int = 4, k: float = 2.0) -> float:
    """VQEG outlier ratio: the fraction of images whose logistic-mapped prediction misses the MOS
    by more than ``k`` times that image's MOS standard deviation (on the MOS scale)."""
    pred, mos = _pair(pred, mos)
    std = np.asarray(mos_std, dtype=float).ravel()
    if std.shape != mos.shape or not np.isfinite(std).all():
        _warn("outlier ratio needs a finite MOS standard deviation per image; returning NaN")
        return float("nan")
    mapped = map_logistic(pred, mos, params)
    return float(np.mean(np.abs(mapped - mos) > k * std))


# ---------------------------------------------------------------------------------------------
# Uncertainty and significance
# ---------------------------------------------------------------------------------------------


def _row_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (NaN when constant)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(axis=1) / np.where(denom > 0, denom, 1), np.nan)


def _resampled_correlations(
    pred: np.ndarray, mos: np.ndarray, method: str, indices: np.ndarray
) -> np.ndarray:
    x, y = pred[indices], mos[indices]
    if method == "srcc":
        x, y = stats.rankdata(x, axis=1), stats.rankdata(y, axis=1)
    elif method != "plcc":
        raise ValueError(f"bootstrap supports 'srcc' and 'plcc', got {method!r}")
    return _row_pearson(x, y)


def _bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_ci(
    pred, mos, metric: str = "srcc", resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """Percentile bootstrap interval of SRCC or PLCC over images: ``{value, low, high}``."""
    pred, mos = _pair(pred, mos)
    value = {"srcc": srcc, "plcc": plcc}[metric](pred, mos)
    if not np.isfinite(value) or resamples < 1:
        return {"value": value, "low": float("nan"), "high": float("nan")}
    samples = _resampled_correlations(
        pred, mos, metric, _bootstrap_indices(len(pred), resamples, seed)
    )
    alpha = (1 - level) / 2
    low, high = np.nanquantile(samples, [alpha, 1 - alpha])
    return {"value": value, "low": float(low), "high": float(high)}


def paired_bootstrap(
    pred_a,
    pred_b,
    mos,
    metric: str = "srcc",
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """Paired bootstrap of ``metric(a) - metric(b)`` on the same resampled images.

    Returns the observed difference, its percentile interval and a two-sided p-value (twice the
    smaller fraction of resampled differences on either side of zero)."""
    pred_a, mos = _pair(pred_a, mos)
    pred_b, _ = _pair(pred_b, mos)
    func = {"srcc": srcc, "plcc": plcc}[metric]
    diff = func(pred_a, mos) - func(pred_b, mos)
    indices = _bootstrap_indices(len(mos), resamples, seed)
    samples = _resampled_correlations(pred_a, mos, metric, indices) - _resampled_correlations(
        pred_b, mos, metric, indices
    )
    samples = samples[np.isfinite(samples)]
    if not np.isfinite(diff) or len(samples) == 0:
        return {
            "diff": float("nan"),
            "low": float("nan"),
            "high": float("nan"),
            "p_value": float("nan"),
        }
    alpha = (1 - level) / 2
    low, high = np.quantile(samples, [alpha, 1 - alpha])
    p = min(1.0, 2 * min(np.mean(samples <= 0), np.mean(samples >= 0)))
    return {"diff": float(diff), "low": float(low), "high": float(high), "p_value": float(p)}


def _check_dependent(r12: float, r13: float, r23: float, n: int) -> None:
    if n <= 3:
        raise ValueError(f"dependent-correlation tests need more than 3 images, got {n}")
    for name, r in (("r12", r12), ("r13", r13), ("r23", r23)):
        if not -1 <= r <= 1:
            raise ValueError(f"{name} must be a correlation in [-1, 1], got {r}")


def williams_test(r12: float, r13: float, r23: float, n: int) -> dict[str, float]:
    """Williams' t (Steiger 1980, eq. 7) for ``r12 == r13`` where variable 1 (the MOS) is shared
    and ``r23`` is the correlation between the two models' predictions; df = n - 3, two-sided."""
    _check_dependent(r12, r13, r23, n)
    det = 1 - r12**2 - r13**2 - r23**2 + 2 * r12 * r13 * r23
    rbar = (r12 + r13) / 2
    denom = 2 * (n - 1) / (n - 3) * det + rbar**2 * (1 - r23) ** 3
    if denom <= 0:
        _warn("Williams' test is undefined here (the two predictions are identical); NaN")
        return {"statistic": float("nan"), "p_value": float("nan"), "df": n - 3}
    t = (r12 - r13) * np.sqrt((n - 1) * (1 + r23) / denom)
    return {"statistic": float(t), "p_value": float(2 * stats.t.sf(abs(t), n - 3)), "df": n - 3}


def steiger_z_test(r12: float, r13: float, r23: float, n: int) -> dict[str, float]:
    """Steiger's (1980) Z for ``r12 == r13`` with Fisher z and the pooled covariance, two-sided."""
    _check_dependent(r12, r13, r23, n)
    rbar = (r12 + r13) / 2
    psi = r23 * (1 - 2 * rbar**2) - 0.5 * rbar**2 * (1 - 2 * rbar**2 - r23**2)
    cov = psi / (1 - rbar**2) ** 2
    if cov >= 1 or abs(r12) == 1 or abs(r13) == 1:
        _warn("Steiger's Z is undefined here (perfect or identical correlations); NaN")
        return {"statistic": float("nan"), "p_value": float("nan")}
    z = (np.arctanh(r12) - np.arctanh(r13)) * np.sqrt((n - 3) / (2 - 2 * cov))
    return {"statistic": float(z), "p_value": float(2 * stats.norm.sf(abs(z)))}


def compare_models(
    pred_a, pred_b, mos, metric: str = "srcc", resamples: int = 1000, seed: int = 0
) -> dict[str, dict]:
    """Is model A's correlation with MOS different from model B's on the same images?

    ``metric='srcc'`` runs the dependent-correlation tests on ranks (Spearman), ``'plcc'`` on the
    raw values."""
    pred_a, mos = _pair(pred_a, mos)
    pred_b, _ = _pair(pred_b, mos)
    corr = {"srcc": srcc, "plcc": plcc}[metric]
    r12, r13, r23 = corr(pred_a, mos), corr(pred_b, mos), corr(pred_a, pred_b)
    return {
        "paired_bootstrap": paired_bootstrap(pred_a, pred_b, mos, metric, resamples, seed),
        "williams": williams_test(r12, r13, r23, len(mos)),
        "steiger": steiger_z_test(r12, r13, r23, len(mos)),
    }


# ---------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------


def summary(pred, mos) -> dict[str, float]:
    """The headline metrics (SRCC, PLCC raw, KRCC, RMSE raw) under the project's keys, without
    stage prefix; the model's epoch metrics report exactly these."""
    return {
        "srcc": srcc(pred, mos),
        "plcc": plcc(pred, mos),
        "krcc": krcc(pred, mos),
        "rmse": rmse(pred, mos),
    }


def full_summary(
    pred,
    mos,
    mos_std=None,
    quantile: float = 0.5,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """Every metric of a test set, flat, for results.json and tables.

    Keys: the headline ones, ``plcc_l4/l5``, ``rmse_l4/l5``, ``mae``, ``evs``, ``r2``,
    ``pinball_q<τ>``, ``slope``, ``intercept``, ``outlier_ratio`` (when ``mos_std`` is given) and
    ``{srcc,plcc}_ci_low/high`` (bootstrap, ``level``)."""
    pred, mos = _pair(pred, mos)
    out = summary(pred, mos)
    for params in (4, 5):
        mapped = _fitted(pred, mos, params)
        out[f"plcc_l{params}"] = float("nan") if mapped is None else plcc(mapped, mos)
        out[f"rmse_l{params}"] = float("nan") if mapped is None else rmse(mapped, mos)
    out.update(
        {
            "mae": mae(pred, mos),
            "evs": evs(pred, mos),
            "r2": r2(pred, mos),
            f"pinball_q{quantile:g}": pinball(pred, mos, quantile),
        }
    )
    out["slope"], out["intercept"] = linear_fit(pred, mos)
    if mos_std is not None and np.isfinite(np.asarray(mos_std, dtype=float)).all():
        out["outlier_ratio"] = outlier_ratio(pred, mos, mos_std)
    for metric in ("srcc", "plcc"):
        ci = bootstrap_ci(pred, mos, metric, resamples, seed, level)
        out[f"{metric}_ci_low"], out[f"{metric}_ci_high"] = ci["low"], ci["high"]
    return out
