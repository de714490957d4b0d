"""``python -m iqa_lab.train`` in a subprocess (a run that can be killed), outputs in ``out``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_train(
    args: list[str], out: Path, cache: Path, check: bool = True
) -> subprocess.CompletedProcess:
    """Run a training with ``args`` into ``out``, the dataset cache in ``cache``; with ``check``
    a failed run fails the test with its stderr."""
    env = {**os.environ, "IQA_LAB_CACHE": str(cache), "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "iqa_lab.train",
            *args,
            f"hydra.run.dir={out}",
            f"paths.log_dir={out}/logs",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and done.returncode:
        raise AssertionError(f"run failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done
