"""``experiment=demo`` (``make demo``) is the fast recipe on the synthetic database, and every
training run reports how long each of its phases took."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from iqa_lab.phases import PhaseClock
from iqa_lab.train import train

from .conftest import compose_config

QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null"]
PHASES = ["data_prepare", "data_setup", "model", "features", "training", "test"]


def test_demo_is_the_fast_recipe_on_held_out_synthetic_photos(tmp_path):
    demo = compose_config("train", ["experiment=demo"], tmp_path / "demo", tmp_path / "cache")
    fast = compose_config(
        "train", ["experiment=biq2021_fast"], tmp_path / "fast", tmp_path / "cache"
    )
    assert demo.data._target_ == "iqa_lab.data.synthetic.SyntheticDataModule"
    assert demo.protocol.name == "content"  # held-out photos
    assert demo.model.backbone.frozen_stages == 8
    assert demo.model.backbone.pooling == "stage_mean_std"
    assert demo.callbacks.feature_cache.enabled is True
    assert demo.callbacks.feature_cache.views == 1
    # one view shared by training and evaluation: the same deterministic transform
    train_t, eval_t = demo.data.transforms.train, demo.data.transforms.eval
    assert train_t.resize == eval_t.resize and not train_t.hflip and train_t.crop_size is None
    # the recipe's optimiser, backbone and schedule come from biq2021_fast, not a copy
    for key in ("model.backbone", "model.optimizer", "model.head_lr_multiplier"):
        assert OmegaConf.select(demo, key) == OmegaConf.select(fast, key), key
    assert demo.task_name == "demo"


def test_phase_clock_times_and_carves_phases():
    ticks = iter([0.0, 2.0, 2.0, 12.0, 12.0, 13.5])
    clock = PhaseClock(clock=lambda: next(ticks))
    with clock.phase("data"):
        pass
    with clock.phase("fit"):
        pass
    clock.carve("fit", "features", 7.0, rest="training")
    with clock.phase("test"):
        pass
    assert clock.seconds == {"data": 2.0, "features": 7.0, "training": 3.0, "test": 1.5}
    assert list(clock.seconds) == ["data", "features", "training", "test"]
    assert clock.summary() == (
        "phases: data 2.0 s, features 7.0 s, training 3.0 s, test 1.5 s (total 13.5 s)"
    )
    clock.carve("test", "features", None)  # nothing cached: no features phase added
    assert clock.seconds["features"] == 7.0 and clock.seconds["test"] == 1.5


def test_demo_run_writes_its_phase_timings(make_cfg, capsys):
    cfg = make_cfg(
        "train",
        [
            "experiment=demo",
            "data.transforms.train.resize=[64,64]",
            "data.transforms.eval.resize=[64,64]",
            "model.backbone.pretrained=false",
            "trainer.max_epochs=2",
        ]
        + QUIET,
    )
    train(cfg)
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    phases = results["phases_s"]
    assert list(phases) == PHASES
    assert all(seconds >= 0 for seconds in phases.values())
    assert phases["features"] > 0 and phases["training"] > 0
    assert sum(phases.values()) <= results["wall_s"] + 0.05
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("phases: "))
    for name in PHASES + ["outputs"]:
        assert f" {name} " in line, name
