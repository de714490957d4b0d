"""The unified FR/NR transformer (after Zeng & Kwong 2021): one encoder and one head for both
modes, NR without a reference, joint training (both losses on a database with references, NR
alone on one without), FR evaluation refused without references, and learning the synthetic
set."""

from __future__ import annotations

import warnings
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from iqa_lab.errors import ConfigError
from iqa_lab.models.unified import UnifiedIQA
from iqa_lab.nn.token_maps import TransformerEncoder
from iqa_lab.train import train
from tests.train_runs import bare_trainer

TINY = [
    "model=unified",
    "model.dim=16",
    "model.encoder.depth=1",
    "model.encoder.num_heads=2",
    "model.encoder.dropout=0",
    "model.head.hidden=16",
    "model.head.dropout=0",
]
NO_REFERENCES = ["data.include_pristine=false"]  # the synthetic set then names no references
QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null"]


def tiny_model(make_cfg, *overrides) -> UnifiedIQA:
    torch.manual_seed(0)
    return hydra.utils.instantiate(make_cfg("train", [*TINY, *overrides]).model)


def _batch(n: int = 3) -> dict:
    torch.manual_seed(1)
    return {
        "image": torch.rand(n, 3, 64, 64),
        "reference": torch.rand(n, 3, 64, 64),
        "mos": torch.linspace(0.1, 0.9, n),
    }


def test_fr_and_nr_share_one_encoder_and_one_head(make_cfg):
    model = tiny_model(make_cfg).eval()
    encoders = [m for m in model.modules() if isinstance(m, TransformerEncoder)]
    assert len(encoders) == 1
    batch = _batch()
    for mode in ("nr", "fr"):
        model.zero_grad()
        model.score_mode(mode, batch["image"], batch["reference"]).sum().backward()
        encoder_grads = [p.grad for p in model.encoder.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in encoder_grads), mode
        assert all(p.grad is not None for p in model.head.parameters()), mode
        # the mode-specific parts: the difference projection (FR only) and one token per mode
        assert (model.difference.weight.grad is not None) == (mode == "fr")
        other = "fr" if mode == "nr" else "nr"
        assert model.mode_tokens[other].grad is None
    # the difference projection starts at zero: FR differs from NR only by its mode token
    assert model.difference.weight.abs().sum() == 0


def test_nr_mode_runs_without_reference_and_fr_mode_refuses_without(make_cfg):
    model = tiny_model(make_cfg).eval()
    image = torch.rand(2, 3, 64, 64)
    assert model(image).shape == (2,) and model.needs == frozenset()
    fr = tiny_model(make_cfg, "model.eval_mode=fr").eval()
    assert fr.needs == frozenset({"reference"})
    with pytest.raises(ConfigError, match="FR mode scores with the reference image"):
        fr(image)
    assert fr(image, reference=torch.rand(2, 3, 64, 64)).shape == (2,)
    with pytest.raises(Exception, match="eval_mode='both'"):
        tiny_model(make_cfg, "model.eval_mode=both")


def test_joint_training_adds_the_other_modes_weighted_loss(make_cfg):
    model = tiny_model(make_cfg, "model.joint_weight=0.5").train()
    batch = _batch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a trainer
        loss = model.training_step(batch, 0)
        nr = model.score_mode("nr", batch["image"])
        fr = model.score_mode("fr", batch["image"], batch["reference"])
        expected = F.mse_loss(nr, batch["mos"]) + 0.5 * F.mse_loss(fr, batch["mos"])
        torch.testing.assert_close(loss, expected)
        # without a reference in the batch: NR alone; joint=false: NR alone too
        alone = model.training_step({k: batch[k] for k in ("image", "mos")}, 0)
        torch.testing.assert_close(alone, F.mse_loss(nr, batch["mos"]))
        model.joint = False
        torch.testing.assert_close(model.training_step(batch, 0), F.mse_loss(nr, batch["mos"]))


def test_eval_in_fr_mode_trains_nr_as_the_other_mode(make_cfg):
    model = tiny_model(make_cfg, "model.eval_mode=fr").train()
    batch = _batch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model(batch["image"], reference=batch["reference"])
        assert list(model.auxiliary_losses(batch)) == ["nr_loss"]


def _setup(cfg):
    datamodule = hydra.utils.instantiate(cfg.data, protocol=cfg.protocol)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def test_references_are_asked_for_only_where_the_database_has_them(make_cfg):
    model = tiny_model(make_cfg)
    for overrides, needs in (([], {"reference"}), (NO_REFERENCES, set())):
        trainer = bare_trainer(max_epochs=1)
        trainer.datamodule = _setup(make_cfg("train", [*TINY, *overrides]))
        model.trainer = trainer
        assert model.needs == needs, overrides


def test_joint_run_logs_both_losses_and_an_nr_only_database_trains_nr(make_cfg):
    cfg = make_cfg("train", ["debug=limit", "logger=csv", "trainer.max_epochs=1", *QUIET, *TINY])
    assert np.isfinite(train(cfg)["test/srcc"])
    logged = pd.concat(pd.read_csv(p) for p in Path(cfg.paths.output_dir).rglob("metrics.csv"))
    assert logged["train/fr_loss"].notna().any() and logged["train/loss"].notna().any()
    cfg = make_cfg(
        "train",
        ["debug=limit", "logger=csv", "trainer.max_epochs=1", *QUIET, *TINY, *NO_REFERENCES],
    )
    assert np.isfinite(train(cfg)["test/srcc"])
    fresh = max(Path(cfg.paths.output_dir).rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)
    assert "train/fr_loss" not in pd.read_csv(fresh)


def test_fr_evaluation_is_refused_on_a_database_without_references(make_cfg):
    cfg = make_cfg("train", [*TINY, *NO_REFERENCES, "model.eval_mode=fr", "logger=none", *QUIET])
    with pytest.raises(ValueError, match="database 'synthetic' gives no reference images"):
        train(cfg)


def test_tiny_unified_model_learns_the_synthetic_set_in_both_modes(make_cfg):
    cfg = make_cfg("train", [*TINY, "model.optimizer.lr=1e-3"])
    datamodule = _setup(cfg)
    torch.manual_seed(0)
    model = hydra.utils.instantiate(cfg.model)
    datamodule.provide({"reference"})

    def train_srcc(mode: str) -> float:
        model.eval()
        with torch.no_grad():
            batches = list(datamodule._loader("train", shuffle=False))
            preds = torch.cat([model.score_mode(mode, b["image"], b["reference"]) for b in batches])
        return spearmanr(preds, torch.cat([b["mos"] for b in batches]))[0]

    before = {mode: train_srcc(mode) for mode in ("nr", "fr")}
    model.train()
    bare_trainer(max_epochs=8, limit_val_batches=0).fit(
        model, train_dataloaders=datamodule.train_dataloader()
    )
    after = {mode: train_srcc(mode) for mode in ("nr", "fr")}
    for mode in ("nr", "fr"):
        assert after[mode] > 0.6 and after[mode] > before[mode] + 0.2, (before, after)


# The related-work-II table's rows (experiments/tables/related_work_2.yaml): the same overrides in
# the synthetic column and in the BIQ2021 column (experiment=biq2021_fast, whose pooled-statistics
# backbone and head settings the rows replace).
MAP_ROW = [
    "model.backbone.pooling=avg",
    "model.backbone.frozen_stages=6",
    "model.head.dropout=0.1",
    "model.head.input_norm=false",
    "model.head.input_dropout=0.0",
]
ROWS = {
    "msscanet": ["model=msscanet", *MAP_ROW, "model.loss=l1", "trainer.max_epochs=4"],
    "unified": ["model=unified", *MAP_ROW, "model.loss=mse", "trainer.max_epochs=6"],
}


@pytest.mark.parametrize("row", sorted(ROWS))
@pytest.mark.parametrize("column", [[], ["experiment=biq2021_fast"]])
def test_the_table_rows_compose_in_both_columns(make_cfg, row, column):
    cfg = make_cfg("train", [*ROWS[row], *column], tiny=False)
    assert cfg.model.backbone.frozen_stages == 6 and cfg.model.backbone.pooling == "avg"
    model = hydra.utils.instantiate(cfg.model)
    assert model.backbone.prefix_channels == 192  # lite0 stage 6: stride 32
    assert model(torch.rand(1, 3, 64, 64)).shape == (1,)
