"""Every command is a console script and a make target, and answers ``--help`` from any folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
MAKE_TARGETS = {
    "iqa-train": "train",
    "iqa-eval": "eval",
    "iqa-score": "score",
    "iqa-explain": "explain",
    "iqa-check": "check",
    "iqa-aggregate": "aggregate",
    "iqa-table": "reproduce-table",
    "iqa-bench": "bench",
}


def test_every_console_script_has_a_make_target_that_says_how_to_get_its_help():
    makefile = (ROOT / "Makefile").read_text()
    assert set(SCRIPTS) == set(MAKE_TARGETS)
    for script, target in MAKE_TARGETS.items():
        help_line = re.search(rf"^{re.escape(target)}:.*?## (.*)$", makefile, re.MULTILINE)
        assert help_line is not None, target
        assert script in help_line[1] and f"make {target} ARGS=--help" in help_line[1], target


def _python_in(folder: Path, args: list[str], **env: str) -> subprocess.CompletedProcess:
    """This Python with ``args``, launched from ``folder`` (not the repository)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **env,
    }
    return subprocess.run(
        [sys.executable, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_console_script_answers_help_from_any_folder(script, tmp_path):
    module, function = SCRIPTS[script].split(":")
    # What the installed script runs, launched from a folder that is not the repository.
    code = (
        f"import sys; from {module} import {function}; sys.argv = [{script!r}, '--help']; "
        f"sys.exit({function}())"
    )
    result = _python_in(tmp_path, ["-c", code])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout.startswith(f"usage: {script}") or "powered by Hydra" in result.stdout
    assert not list(tmp_path.iterdir())  # asking for help writes nothing


TINY_SYNTHETIC = [
    "data.photos=[astronaut,coffee,camera,china]",
    "data.crops_per_photo=1",
    "data.crop_size=48",
    "data.distortions=[jpeg]",
    "data.levels=[1,5]",
]


def test_a_command_line_multirun_names_its_sweep_folder_under_the_launch_folder(tmp_path):
    # The sweeper resolves hydra.sweep.dir (from paths.log_dir) before Hydra's own runtime
    # config exists: ${hydra:runtime.cwd} there failed every `-m` run.
    command = ["-m", "iqa_lab.train", "-m", "protocol.repeat=0,1", "train=false", "test=false"]
    result = _python_in(tmp_path, command + TINY_SYNTHETIC, IQA_LAB_CACHE=str(tmp_path / "cache"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    sweeps = list((tmp_path / "logs" / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1
    assert sorted(p.name for p in sweeps[0].iterdir() if p.is_dir()) == ["0", "1"]
