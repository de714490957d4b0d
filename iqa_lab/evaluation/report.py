"""The plots researchers look at, per run and per table, and a compact Markdown report linking them.

Per run (test split): prediction vs MOS with the fitted logistic curve, residuals after that
mapping against MOS, the MOS and prediction distributions, and SRCC per distortion type where the
database has types. Per table: ours beside the published value for every cell.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from iqa_lab.evaluation.metrics import fit_logistic_4, logistic_4, map_logistic, srcc, summary  # noqa: E402
from iqa_lab.files import atomic_path, atomic_write_text  # noqa: E402


def _save(fig: plt.Figure, path: str | Path) -> Path:
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)
    return Path(path)


def scatter_plot(pred, mos, path: str | Path, title: str, mos_label: str = "MOS") -> Path:
    """Prediction vs MOS with the fitted 4-parameter logistic curve."""
    pred, mos = np.asarray(pred, dtype=float), np.asarray(mos, dtype=float)
    metrics = summary(pred, mos)
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=120)
    ax.scatter(pred, mos, s=8, alpha=0.5, edgecolors="none")
    params = fit_logistic_4(pred, mos)
    if params is not None:
        xs = np.linspace(pred.min(), pred.max(), 200)
        ax.plot(xs, logistic_4(xs, *params), color="C3", lw=2, label="4-parameter logistic fit")
        ax.legend(loc="lower right")
    ax.set_xlabel("prediction")
    ax.set_ylabel(mos_label)
    ax.set_title(
        f"{title}\nSRCC {metrics['srcc']:.3f}  PLCC {metrics['plcc']:.3f}  n={len(pred)}",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _mapped(pred: np.ndarray, mos: np.ndarray) -> np.ndarray:
    """Predictions on the MOS scale via the 4-parameter logistic (raw if the fit fails)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return map_logistic(pred, mos, 4)


def residual_plot(
    pred, mos, path: str | Path, title: str, mos_label: str = "MOS", mapped=None
) -> Path:
    """MOS minus the logistic-mapped prediction, against MOS (bias across the quality range).
    ``mapped``: the mapped predictions when the caller already has them."""
    pred, mos = np.asarray(pred, dtype=float), np.asarray(mos, dtype=float)
    residual = mos - (_mapped(pred, mos) if mapped is None else np.asarray(mapped, dtype=float))
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.scatter(mos, residual, s=8, alpha=0.5, edgecolors="none")
    ax.axhline(0, color="k", lw=1)
    if len(mos) >= 10:
        order = np.argsort(mos)
        window = max(len(mos) // 10, 3)
        smooth = pd.Series(residual[order]).rolling(window, center=True, min_periods=1).mean()
        ax.plot(mos[order], smooth, color="C3", lw=2, label=f"running mean ({window})")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel(mos_label)
    ax.set_ylabel("residual (MOS − mapped prediction)")
    ax.set_title(f"{title}: residuals after the logistic mapping", fontsize=9)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def distribution_plot(
    pred, mos, path: str | Path, title: str, mos_label: str = "MOS", mapped=None
) -> Path:
    """Histograms of MOS and of the (logistic-mapped) predictions on the same axis."""
    pred, mos = np.asarray(pred, dtype=float), np.asarray(mos, dtype=float)
    mapped = _mapped(pred, mos) if mapped is None else np.asarray(mapped, dtype=float)
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    bins = np.linspace(min(mos.min(), mapped.min()), max(mos.max(), mapped.max()) + 1e-9, 30)
    ax.hist(mos, bins=bins, alpha=0.55, label=mos_label)
    ax.hist(mapped, bins=bins, alpha=0.55, label="prediction (mapped)")
    ax.set_xlabel(mos_label)
    ax.set_ylabel("images")
    ax.set_title(f"{title}: distributions", fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)


def per_type_srcc(predictions: pd.DataFrame) -> pd.Series:
    """SRCC per distortion type (types with at least 3 images), sorted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        values = {
            t: srcc(g["prediction"], g["mos"])
            for t, g in predictions.groupby("dist_type")
            if t and len(g) >= 3
        }
    return pd.Series(values, dtype=float).sort_values()


def per_type_plot(predictions: pd.DataFrame, path: str | Path, title: str) -> Path | None:
    """Bars of SRCC per distortion type, or None when the database has no types."""
    if "dist_type" not in predictions or not predictions["dist_type"].fillna("").astype(bool).any():
        return None
    values = per_type_srcc(predictions.assign(dist_type=predictions["dist_type"].fillna("")))
    if values.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(values) + 1.2), dpi=120)
    ax.barh(values.index, values.to_numpy(), color=np.where(values.to_numpy() < 0, "C3", "C0"))
    ax.set_xlabel("SRCC")
    ax.set_xlim(min(-0.05, np.nanmin(values.to_numpy()) - 0.05), 1)
    ax.set_title(f"{title}: SRCC per distortion type", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def run_figures(
    test: pd.DataFrame, out_dir: str | Path, title: str, mos_label: str = "MOS"
) -> dict[str, Path]:
    """Every per-run figure of the test predictions, written into ``out_dir``."""
    out_dir = Path(out_dir)
    pred = test["prediction"].to_numpy(dtype=float)
    mos = test["mos"].to_numpy(dtype=float)
    mapped = _mapped(pred, mos)  # fitted once for both plots that show it
    figures = {
        "scatter": scatter_plot(pred, mos, out_dir / "scatter.png", title, mos_label),
        "residuals": residual_plot(pred, mos, out_dir / "residuals.png", title, mos_label, mapped),
        "distributions": distribution_plot(
            pred, mos, out_dir / "distributions.png", title, mos_label, mapped
        ),
    }
    per_type = per_type_plot(test, out_dir / "per_type_srcc.png", title)
    if per_type is not None:
        figures["per_type_srcc"] = per_type
    return figures


def run_report(results: dict, figures: dict[str, Path], path: str | Path) -> Path:
    """``report.md``: the stamp, the command's config summary, every metric and the figures."""
    metrics = results["metrics"]
    lines = [
        f"# {results.get('task_name', 'run')}: {results['data']['name']}"
        + (" — PAPER-PARITY (checkpoint picked on test)" if results["paper_parity"] else ""),
        "",
    ]
    if results["data"].get("synthetic_labels"):
        lines += ["Labels are SYNTHETIC (a pseudo-MOS from full-reference metrics).", ""]
    lines += [
        f"- protocol: `{results['protocol']['name']}`, repeat {results['split']['repeat']}"
        f" (split seed {results['split']['seed']}), selection `{results['selection']}`",
        f"- split sizes: {results['data']['split_sizes']}",
        f"- git commit `{results['git_commit']}`, wall time {results['wall_s']:.0f} s",
        f"- bad inputs: {results['bad_inputs']['count']}",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [
        f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
        for k, v in metrics.items()
    ]
    lines.append("")
    lines += [f"![{name}]({Path(p).name})" for name, p in figures.items()]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def table_plot(cells: pd.DataFrame, path: str | Path, title: str, metric: str) -> Path:
    """Ours (median over repeats) beside the published value, one pair of bars per cell."""
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(cells) + 1.5), 3.5), dpi=120)
    x = np.arange(len(cells))
    ax.bar(x - 0.2, cells["ours"].astype(float), 0.4, label="ours (median)")
    ax.bar(x + 0.2, cells["published"].astype(float), 0.4, label="published")
    ax.set_xticks(x, [f"{r}\n{c}" for r, c in zip(cells["row"], cells["column"])], fontsize=7)
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)
