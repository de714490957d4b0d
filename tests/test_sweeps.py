"""Sweeps at scale: SLURM through hydra-submitit-launcher (``hydra/launcher=slurm``) and Optuna
through hydra-optuna-sweeper (``hparams_search=optuna``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import hydra
import optuna
import pandas as pd
import pytest
import submitit
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from lightning.fabric.utilities.rank_zero import rank_zero_only as fabric_rank_zero_only
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank_zero_only
from omegaconf import OmegaConf, open_dict

from iqa_lab.losses import LOSSES
from iqa_lab.sweeps import SqliteStorageFolder
from tests.conftest import CONF_DIR

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "data.photos=[astronaut,coffee,camera,china]",
    "data.crops_per_photo=1",
    "data.crop_size=48",
    "data.distortions=[jpeg]",
    "data.levels=[1,5]",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]


@pytest.fixture(autouse=True)
def _forget_hydra_config():
    """``_compose`` sets the process-wide HydraConfig (the launcher's fields read it); later tests
    in this process must not see a multirun's Hydra state (their configs resolve ``group``)."""
    yield
    HydraConfig.instance().cfg = None


def _compose(overrides: list[str]):
    """conf/train.yaml with its hydra node, as a multirun of these overrides sees it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    GlobalHydra.instance().clear()
    return cfg


def _python(folder: Path, args: list[str], cache: Path) -> subprocess.CompletedProcess:
    """This Python with ``args``, launched from ``folder``; fails the test with its output."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "IQA_LAB_CACHE": str(cache),
    }
    done = subprocess.run(
        [sys.executable, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


SLURM = ["hydra/launcher=slurm", "trainer=ddp", "hydra.launcher.partition=gpu"]


def test_the_slurm_launcher_takes_its_resources_from_config():
    launcher = OmegaConf.to_container(_compose(SLURM).hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    expected = dict(partition="gpu", gpus_per_node=2, tasks_per_node=2, nodes=1, cpus_per_task=8)
    expected.update(mem_gb=64, timeout_min=720, array_parallelism=16, max_num_timeout=0)
    assert {key: launcher[key] for key in expected} == expected
    # One GPU, one task: trainer=gpu.
    one = _compose(["hydra/launcher=slurm", "trainer=gpu"]).hydra.launcher
    assert (one.gpus_per_node, one.tasks_per_node) == (1, 1)


def test_the_slurm_launcher_writes_an_sbatch_array_with_those_resources(tmp_path, monkeypatch):
    # submitit needs srun on PATH to build a SLURM executor; nothing is submitted: the array's
    # sbatch script is rendered where submitit would hand it to sbatch.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    scripts = []

    def render(executor, function, *job_arguments):
        executor._executor.parameters["map_count"] = len(job_arguments[0])
        scripts.append(executor._executor._make_submission_file_text("python -m x", "uid"))
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", render)
    cfg = _compose(SLURM + [f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    launcher = hydra.utils.instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    launcher.launch([["protocol.repeat=0"], ["protocol.repeat=1"]], initial_job_idx=0)
    flags = set(re.findall(r"^#SBATCH (.*)$", scripts[0], re.MULTILINE))
    assert {
        "--array=0-1%2",  # two runs, at most array_parallelism at once
        "--partition=gpu",
        "--gpus-per-node=2",
        "--ntasks-per-node=2",
        "--nodes=1",
        "--cpus-per-task=8",
        "--mem=64GB",
        "--time=720",
    } <= flags
    # Each array task's log goes to the sweep's .submitit/<job>_<task>/.
    assert f"--output={tmp_path / 'sweep'}/.submitit/%A_%a/%A_%a_0_log.out" in flags


def test_lightning_on_slurm_gets_its_rank_and_devices_from_the_launchers_tasks(
    tmp_path, monkeypatch
):
    # What SLURM sets in the second task of the array's job (one node, tasks_per_node tasks).
    cfg = _compose(SLURM + ["trainer.accelerator=cpu", "trainer.sync_batchnorm=false"])
    launcher = cfg.hydra.launcher
    tasks = launcher.tasks_per_node * launcher.nodes
    slurm = dict(
        SLURM_NTASKS=tasks,
        SLURM_NTASKS_PER_NODE=launcher.tasks_per_node,
        SLURM_NNODES=launcher.nodes,
        SLURM_JOB_NAME=launcher.name,
        SLURM_JOB_ID=4242,
        SLURM_NODELIST="gpu-node-1",
        SLURM_PROCID=1,
        SLURM_LOCALID=1,
        SLURM_NODEID=0,
    )
    for key, value in slurm.items():
        monkeypatch.setenv(key, str(value))
    # The trainer of rank 1 sets the process-wide rank that rank_zero_only reads (Lightning and
    # lightning_utilities each keep one): restored after the test, or later runs log nothing.
    for rank_holder in (fabric_rank_zero_only, utils_rank_zero_only):
        monkeypatch.setattr(rank_holder, "rank", getattr(rank_holder, "rank", 0))
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer.strategy.cluster_environment, SLURMEnvironment)
    assert (trainer.num_devices, trainer.world_size) == (2, 2)
    assert (trainer.global_rank, trainer.local_rank, trainer.node_rank) == (1, 1, 0)


@pytest.mark.slow  # three Python processes (the sweep and its two jobs): ~65 s on a busy machine
def test_submitit_local_runs_the_two_jobs_of_a_multirun(tmp_path):
    command = ["-m", "iqa_lab.train", "-m", "hydra/launcher=submitit_local", "protocol.repeat=0,1"]
    _python(tmp_path, command + ["debug=fdr"] + TINY, tmp_path / "cache")
    (sweep,) = (tmp_path / "logs" / "debug" / "multiruns").iterdir()
    results = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]
    assert [r["split"]["repeat"] for r in results] == [0, 1]
    assert all(r["metrics"]["test/n"] > 0 for r in results)
    # Each ran as a submitit job, which logged its end in the sweep's .submitit folder.
    logs = [p.read_text() for p in sweep.glob(".submitit/*/*_log.out")]
    assert sum("Job completed successfully" in text for text in logs) == 2


@pytest.mark.slow  # ~70 s: the table's multirun and its two submitit jobs
def test_a_table_passes_the_launcher_to_each_cells_multirun(tmp_path):
    data = [o for o in TINY if o.startswith("data.")]
    spec = {
        "title": "tiny",
        "source": "none (a test)",
        "repeats": 2,
        "metrics": ["test/srcc"],
        "base": ["trainer.max_epochs=1", "+trainer.limit_train_batches=1"],
        "rows": {"lite0": []},
        "columns": {"synthetic": ["data=synthetic", *data]},
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(spec))
    table = ["-m", "iqa_lab.evaluation.tables", str(tmp_path / "tiny.yaml"), "--results-dir", "out"]
    _python(tmp_path, table + ["hydra/launcher=submitit_local"], tmp_path / "cache")
    (cell,) = (tmp_path / "logs" / "tables" / "tiny").glob("*/lite0__synthetic")
    assert sorted(p.parent.name for p in cell.glob("*/results.json")) == ["0", "1"]
    assert len(list(cell.glob(".submitit/*/*_log.out"))) == 2
    rendered = pd.read_csv(tmp_path / "out" / "tiny" / "table.csv").iloc[0]
    assert rendered["status"] == "ok" and rendered["n"] == 2


def _choices(override: str) -> list:
    parsed = OverridesParser.create().parse_overrides([f"x={override}"])[0]
    return list(parsed.value().list)


def test_the_optuna_search_maximises_val_srcc_in_a_study_under_the_log_folder(tmp_path):
    cfg = _compose(["hparams_search=optuna", f"paths.log_dir={tmp_path}"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert cfg.optimized_metric == "val/srcc"
    assert sweeper.study_name == "train-baseline-synthetic"
    assert sweeper.storage == f"sqlite:///{tmp_path}/train/optuna/train-baseline-synthetic.db"
    params = sweeper.params
    assert params["model.optimizer.lr"] == "tag(log, interval(1e-5, 1e-2))"
    assert params["model.optimizer.weight_decay"] == "tag(log, interval(1e-6, 1e-1))"
    assert _choices(params["model.head.hidden"]) == [64, 128, 256, 512]
    assert set(_choices(params["model.loss"])) == set(LOSSES)
    # SQLite creates no folder: the callback does, before the sweeper opens the study.
    SqliteStorageFolder().on_multirun_start(cfg)
    assert (tmp_path / "train" / "optuna").is_dir()


OPTUNA = ["-m", "iqa_lab.train", "hparams_search=optuna", "hydra.sweeper.n_trials=2"]
OPTUNA += TINY + ["trainer.max_epochs=1", "+trainer.limit_train_batches=1"]
STUDY = "train-baseline-synthetic"


def _trials(folder: Path) -> list[tuple[str, float]]:
    """(state, value) of each trial of the study the Optuna sweep keeps under ``folder``/logs."""
    storage = folder / "logs" / "train" / "optuna" / f"{STUDY}.db"
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{storage}")
    return [(trial.state.name, trial.value) for trial in study.trials]


def test_an_optuna_sweep_of_two_trials_leaves_them_in_its_sqlite_study(tmp_path):
    _python(tmp_path, OPTUNA, tmp_path / "cache")
    trials = _trials(tmp_path)
    assert [state for state, _ in trials] == ["COMPLETE", "COMPLETE"]
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    results = [json.loads((sweep / f"{k}" / "results.json").read_text()) for k in (0, 1)]
    assert [value for _, value in trials] == [r["metrics"]["val/srcc"] for r in results]
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert best.best_value == max(value for _, value in trials)


@pytest.mark.slow  # two launches of two trials: ~70 s on a busy 2-core machine
def test_a_relaunched_optuna_sweep_adds_its_trials_to_the_same_study(tmp_path):
    _python(tmp_path, OPTUNA, tmp_path / "cache")
    first = _trials(tmp_path)
    _python(tmp_path, OPTUNA, tmp_path / "cache")
    again = _trials(tmp_path)
    assert again[:2] == first and [state for state, _ in again] == ["COMPLETE"] * 4
