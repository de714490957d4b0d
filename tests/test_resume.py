"""A run killed at a random step (SIGKILL) and resumed from its ``last.ckpt`` into another folder
writes the uninterrupted run's ``predictions.csv`` byte for byte (baseline and StairIQA), and
``last.ckpt`` is always the last epoch."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest
import torch

from iqa_lab.train import train
from tests.conftest import TINY_DATA
from tests.train_runs import run_train

EPOCHS = 4
STEPS_PER_EPOCH = 2  # TINY_DATA's 7 training images in batches of 4
MODELS = {"baseline": [], "stairiqa": ["model=stairiqa"]}
QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null", "reuse_finished=false"]


def _args(model: str) -> list[str]:
    return [*TINY_DATA, *MODELS[model], f"trainer.max_epochs={EPOCHS}", *QUIET]


@pytest.fixture(scope="module", params=list(MODELS))
def uninterrupted(request, tmp_path_factory, cache_dir) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp(request.param) / "uninterrupted"
    run_train(_args(request.param), out, cache_dir)
    return request.param, out


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_killed_at_a_random_step_and_resumed_gives_identical_predictions(
    uninterrupted, tmp_path, cache_dir
):
    model, reference = uninterrupted
    # Any step after the first epoch (before it there is no last.ckpt to resume from).
    step = random.SystemRandom().randrange(STEPS_PER_EPOCH, EPOCHS * STEPS_PER_EPOCH)
    killed = tmp_path / "killed"
    kill = ["+callbacks.kill._target_=tests.killer.KillAtStep", f"+callbacks.kill.step={step}"]
    done = run_train(_args(model) + kill, killed, cache_dir, check=False)
    assert done.returncode == -9, f"step {step}: {done.stderr[-2000:]}"
    assert not (killed / "results.json").exists()
    before = _listing(killed / "checkpoints")

    resumed = tmp_path / "resumed"
    last = killed / "checkpoints" / "last.ckpt"
    run_train(_args(model) + [f"ckpt_path={last}"], resumed, cache_dir)

    logged = pd.read_csv(next(resumed.glob("csv/**/metrics.csv")))
    # last.ckpt is the epoch before the killed one: the resume starts at the killed epoch.
    assert logged["epoch"].min() == step // STEPS_PER_EPOCH, f"killed at step {step}"
    expected = (reference / "predictions.csv").read_bytes()
    assert (resumed / "predictions.csv").read_bytes() == expected, f"killed at step {step}"
    ours, theirs = (json.loads((d / "results.json").read_text()) for d in (resumed, reference))
    assert ours["metrics"]["val/srcc"] == theirs["metrics"]["val/srcc"]
    # The selected checkpoint lives in the resumed run's folder; the killed run is left as it was.
    assert Path(ours["checkpoint"]).parent == resumed / "checkpoints"
    assert Path(ours["checkpoint"]).name == Path(theirs["checkpoint"]).name
    assert _listing(killed / "checkpoints") == before


def test_last_ckpt_is_the_last_epoch_when_validation_stops_improving(make_cfg):
    # Weights and BatchNorm statistics frozen (lr must be > 0: a step of 1e-12 is below float32
    # resolution of the weights): no epoch after the first improves validation.
    frozen = ["model.optimizer.lr=1e-12", "model.freeze_bn=true"]
    cfg = make_cfg("train", ["trainer.max_epochs=3", *frozen, *QUIET])
    train(cfg)
    checkpoints = Path(cfg.paths.output_dir) / "checkpoints"
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 3 * STEPS_PER_EPOCH)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch_000.ckpt", "last.ckpt"]
