"""IQA correlation and error metrics as pure functions over numpy arrays.

Constant or too-short inputs give NaN with a warning, never a crash. ``fit_logistic_4`` is the
VQEG four-parameter logistic mapping used before PLCC in many papers and for the scatter curve.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize, stats


def _pair(pred, mos) -> tuple[np.ndarray, np.ndarray]:
    pred, mos = np.asarray(pred, dtype=float).ravel(), np.asarray(mos, dtype=float).ravel()
    if pred.shape != mos.shape:
        raise ValueError(f"prediction and MOS lengths differ: {pred.shape} vs {mos.shape}")
    return pred, mos


def _degenerate(pred: np.ndarray, mos: np.ndarray, metric: str) -> bool:
    if len(pred) < 2 or np.ptp(pred) == 0 or np.ptp(mos) == 0:
        warnings.warn(f"{metric} is undefined for constant or single-element input; returning NaN",
                      RuntimeWarning, stacklevel=3)
        return True
    return False


def srcc(pred, mos) -> float:
    pred, mos = _pair(pred, mos)
    return float("nan") if _degenerate(pred, mos, "SRCC") else float(stats.spearmanr(pred, mos)[0])


def krcc(pred, mos) -> float:
    pred, mos = _pair(pred, mos)
    return float("nan") if _degenerate(pred, mos, "KRCC") else float(stats.kendalltau(pred, mos)[0])


def plcc(pred, mos) -> float:
    pred, mos = _pair(pred, mos)
    return float("nan") if _degenerate(pred, mos, "PLCC") else float(stats.pearsonr(pred, mos)[0])


def rmse(pred, mos) -> float:
    pred, mos = _pair(pred, mos)
    return float(np.sqrt(np.mean((pred - mos) ** 2))) if len(pred) else float("nan")


def logistic_4(x, beta1, beta2, beta3, beta4):
    """VQEG: ``(beta1 - beta2) / (1 + exp(-(x - beta3) / |beta4|)) + beta2``."""
    return (beta1 - beta2) / (1.0 + np.exp(-(x - beta3) / np.abs(beta4))) + beta2


def fit_logistic_4(pred, mos) -> np.ndarray | None:
    """Parameters of the 4-parameter logistic from predictions to MOS, or None (with a warning)
    when the fit does not converge."""
    pred, mos = _pair(pred, mos)
    if _degenerate(pred, mos, "logistic fit"):
        return None
    p0 = [mos.max(), mos.min(), np.median(pred), max(np.std(pred), 1e-6)]
    if stats.spearmanr(pred, mos)[0] < 0:
        p0[0], p0[1] = p0[1], p0[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            params, _ = optimize.curve_fit(logistic_4, pred, mos, p0=p0, maxfev=20000)
    except (RuntimeError, ValueError) as err:
        warnings.warn(f"logistic fit did not converge ({err}); using raw predictions",
                      RuntimeWarning, stacklevel=2)
        return None
    return params


def summary(pred, mos) -> dict[str, float]:
    """The headline metrics under the project's keys (without stage prefix)."""
    return {"srcc": srcc(pred, mos), "plcc": plcc(pred, mos), "krcc": krcc(pred, mos),
            "rmse": rmse(pred, mos)}
