"""W&B: the runs of one multirun / one table share a group, carry model / database / protocol /
repeat tags, log the resolved config and the test figures, finish, and keep every file under the
run folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

from iqa_lab.evaluation import tables
from tests.conftest import TINY_DATA
from tests.train_runs import run_multirun
from tests.wandb_offline import run_summary

QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null"]
ONE_SHORT_EPOCH = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
]


def test_a_multirun_leaves_two_finished_offline_runs_in_one_group(tmp_path, cache_dir):
    sweep, temp = tmp_path / "sweep", tmp_path / "tmp"
    temp.mkdir()
    args = ["logger=wandb", "protocol.repeat=0,1", *TINY_DATA, *ONE_SHORT_EPOCH, *QUIET]
    # wandb reads no account and no server: offline is the config's default, not the test's.
    run_multirun(args, sweep, cache_dir, TMPDIR=str(temp), WANDB_API_KEY=None, WANDB_MODE=None)

    runs = {}
    for job in ("0", "1"):
        files = list((sweep / job / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(files) == 1, f"job {job}: {files}"
        runs[job] = run_summary(files[0])
    for job, run in runs.items():
        assert run["exit_code"] == 0, f"job {job} never finished"
        assert run["group"] == sweep.name  # the multirun's folder
        assert run["tags"] == [
            "model:baseline",
            "database:synthetic",
            "protocol:random",
            f"repeat:{job}",
        ]
        # the whole resolved config, not only the model's hyperparameters
        assert run["config"]["protocol"]["repeat"] == int(job)
        assert run["config"]["data"]["name"] == "synthetic"
        assert run["config"]["paths"]["output_dir"] == str(sweep / job)
        figures = sorted(Path(f).name.split("_")[0] for f in run["files"] if "media/" in f)
        assert figures == ["distributions", "residuals", "scatter"]
        # wandb's service logs under the run folder, its temporary folders gone
        assert list((sweep / job / "wandb" / "cache" / "wandb" / "logs").glob("core-debug-*"))
    assert not [p.name for p in temp.iterdir() if "wandb" in p.name]


def test_every_run_of_a_table_is_launched_in_the_tables_group(monkeypatch, tmp_path):
    launched = []

    def run(command, check):
        launched.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(tables.subprocess, "run", run)
    spec = {"name": "stairiqa table 3"}
    tables.launch(tables.Cell("LIVE", "lite0", ["data=live"]), spec, tmp_path, "cell 1 of 1")
    tables.launch(tables.Cell("LIVE", "mine", ["group=mine"]), spec, tmp_path, "cell 1 of 1")
    assert [a for a in launched[0] if a.startswith("group=")] == ["group=stairiqa_table_3"]
    assert [a for a in launched[1] if a.startswith("group=")] == ["group=mine"]  # the user's


def test_a_single_run_has_no_group_and_tags_only_what_the_config_names(make_cfg):
    cfg = make_cfg("train", ["logger=wandb", "tags=[demo]", "model=stairiqa"])
    assert cfg.logger.wandb.group is None
    assert list(cfg.logger.wandb.tags) == [
        "demo",
        "model:stairiqa",
        "database:synthetic",
        "protocol:random",
        "repeat:0",
    ]
    # evaluating a checkpoint: no model config, no model tag
    cfg = make_cfg("eval", ["logger=wandb", "group=mine", "protocol.repeat=3"])
    assert cfg.logger.wandb.group == "mine"
    assert list(cfg.logger.wandb.tags) == ["database:synthetic", "protocol:random", "repeat:3"]


def test_a_failed_job_closes_its_run_marked_failed(tmp_path, monkeypatch):
    import wandb

    from iqa_lab.runs import close_wandb

    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run = wandb.init(mode="offline", dir=tmp_path, project="iqa_lab")
    run.log({"val/srcc": 0.5})
    close_wandb(failed=True)
    assert wandb.run is None
    (path,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    assert run_summary(path)["exit_code"] == 1
    close_wandb()  # nothing open: nothing to do
