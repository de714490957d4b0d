"""Plots researchers look at for a run."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from iqa_lab.evaluation.metrics import fit_logistic_4, logistic_4, summary  # noqa: E402


def scatter_plot(pred, mos, path: str | Path, title: str, mos_label: str = "MOS") -> plt.Figure:
    """Prediction vs MOS with the fitted 4-parameter logistic curve; saved to ``path``."""
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
    ax.set_title(f"{title}\nSRCC {metrics['srcc']:.3f}  PLCC {metrics['plcc']:.3f}  "
                 f"n={len(pred)}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return fig
