"""``python -m iqa_lab.train`` (and the other entry points) in a subprocess (a run that can be
killed, a multirun), outputs in ``out``; a bare Lightning trainer for the tests' own small loops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L

ROOT = Path(__file__).resolve().parents[1]


def run_train(
    args: list[str], out: Path, cache: Path, check: bool = True
) -> subprocess.CompletedProcess:
    """Run a training with ``args`` into ``out``, the dataset cache in ``cache``; with ``check``
    a failed run fails the test with its stderr."""
    return _train([*args, f"hydra.run.dir={out}", f"paths.log_dir={out}/logs"], cache, check)


def run_multirun(
    args: list[str], sweep: Path, cache: Path, check: bool = True, **env: str | None
) -> subprocess.CompletedProcess:
    """Run ``python -m iqa_lab.train -m`` with ``args`` (a sweep, e.g. ``protocol.repeat=0,1``)
    into ``sweep``, the run store in ``sweep/logs``; ``env`` is set in the environment (None:
    removed from it)."""
    args = ["-m", *args, f"hydra.sweep.dir={sweep}", f"paths.log_dir={sweep}/logs"]
    return _train(args, cache, check, **env)


def _train(
    args: list[str], cache: Path, check: bool, **extra: str | None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "IQA_LAB_CACHE": str(cache), "PYTHONHASHSEED": "0", **extra}
    env = {name: value for name, value in env.items() if value is not None}
    done = subprocess.run(
        [sys.executable, "-m", "iqa_lab.train", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and done.returncode:
        raise AssertionError(f"run failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done


def run_app(module: str, args: list[str], run_dir: Path) -> subprocess.CompletedProcess:
    """``python -m iqa_lab.<module> *args`` from the repository root, its Hydra folder ``run_dir``,
    no progress line; the caller checks the exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", f"iqa_lab.{module}", *args, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        env={**os.environ, "IQA_LAB_PROGRESS": "0"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def bare_trainer(**options) -> L.Trainer:
    """A CPU Lightning trainer that logs, checkpoints and prints nothing, with ``options``."""
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **options,
    )
