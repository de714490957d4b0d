"""The files every run writes into its output folder: results.json, predictions.csv, scatter.png."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

import pandas as pd

from iqa_lab.files import atomic_write_text

PREDICTION_COLUMNS = [
    "image",
    "mos",
    "prediction",
    "split",
    "mos_raw",
    "ref",
    "dist_type",
    "dist_level",
    "db",
    "head",
    "stamp",
]  # head: the regressor that scored it


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The commit of the code that ran (``-dirty`` when the tree has uncommitted changes)."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def machine() -> dict:
    import torch

    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_results_json(path: str | Path, results: dict) -> None:
    atomic_write_text(path, json.dumps(results, indent=2, sort_keys=False, default=str))


def write_predictions_csv(path: str | Path, predictions: pd.DataFrame) -> None:
    missing = {"image", "mos", "prediction", "split"} - set(predictions.columns)
    if missing:
        raise ValueError(f"predictions lack columns {sorted(missing)}")
    columns = [c for c in PREDICTION_COLUMNS if c in predictions.columns]
    atomic_write_text(path, predictions[columns].to_csv(index=False))
