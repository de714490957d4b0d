"""MS-SCANet (Mithila & Farias, ICASSP 2025): the two consistency losses against NumPy, the two
branches and their cross-branch attention, the consistency terms in the training loss, training
from cached prefix maps, and learning the synthetic set."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from iqa_lab.errors import ConfigError
from iqa_lab.losses import adaptive_pooling_consistency_loss, cross_branch_consistency_loss
from iqa_lab.nn.attention import ChannelAttention, SpatialAttention
from iqa_lab.train import train
from tests.train_runs import bare_trainer

TINY = [
    "model=msscanet",
    "model.dim=16",
    "model.encoder.depth=1",
    "model.encoder.num_heads=2",
    "model.cross_attention.num_heads=2",
    "model.head.hidden=16",
]
NO_DROPOUT = ["model.encoder.dropout=0", "model.cross_attention.dropout=0", "model.head.dropout=0"]
QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null", "logger=none"]


# --- the consistency losses against NumPy --------------------------------------------------------


def _np_adaptive_avg_pool(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PyTorch's adaptive average pooling: bin i covers [floor(i·H/h), ceil((i+1)·H/h))."""
    (height, width), (h, w) = x.shape[-2:], size
    out = np.empty((*x.shape[:-2], h, w))
    for i in range(h):
        r0, r1 = (i * height) // h, math.ceil((i + 1) * height / h)
        for j in range(w):
            c0, c1 = (j * width) // w, math.ceil((j + 1) * width / w)
            out[..., i, j] = x[..., r0:r1, c0:c1].mean(axis=(-2, -1))
    return out


def _np_standardise(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + 1e-5)


def test_cross_branch_consistency_is_one_minus_the_mean_cosine():
    rng = np.random.default_rng(0)
    fine, coarse = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    cosine = (fine * coarse).sum(1) / np.linalg.norm(fine, axis=1) / np.linalg.norm(coarse, axis=1)
    value = cross_branch_consistency_loss(torch.tensor(fine), torch.tensor(coarse)).item()
    assert value == pytest.approx(float(np.mean(1 - cosine)), rel=1e-10)
    # agreeing branches (any positive scale) cost nothing, opposite ones the most
    assert cross_branch_consistency_loss(torch.tensor(fine), 3 * torch.tensor(fine)).item() == (
        pytest.approx(0.0, abs=1e-12)
    )
    assert cross_branch_consistency_loss(
        torch.tensor(fine), -torch.tensor(fine)
    ).item() == pytest.approx(2.0)


@pytest.mark.parametrize(("fine_size", "coarse_size"), [((6, 6), (3, 3)), ((5, 7), (3, 4))])
def test_adaptive_pooling_consistency_against_numpy(fine_size, coarse_size):
    rng = np.random.default_rng(1)
    fine = rng.normal(size=(2, 6, *fine_size))
    coarse = rng.normal(size=(2, 6, *coarse_size))
    pooled = _np_adaptive_avg_pool(fine, coarse_size)
    expected = np.mean((_np_standardise(pooled) - _np_standardise(coarse)) ** 2)
    value = adaptive_pooling_consistency_loss(torch.tensor(fine), torch.tensor(coarse)).item()
    assert value == pytest.approx(expected, rel=1e-9)
    # the coarse map that IS the area average of the fine one (at another scale) is consistent
    at_scale = 3.0 * torch.tensor(pooled)
    assert adaptive_pooling_consistency_loss(torch.tensor(fine), at_scale).item() == (
        pytest.approx(0.0, abs=1e-5)
    )
    # a subsampled map is not that average: it is penalised
    nearest = F.interpolate(torch.tensor(fine), size=coarse_size, mode="nearest")
    assert adaptive_pooling_consistency_loss(torch.tensor(fine), nearest).item() > 0.1


# --- the model ----------------------------------------------------------------------------------


def tiny_model(make_cfg, *overrides):
    torch.manual_seed(0)
    return hydra.utils.instantiate(make_cfg("train", [*TINY, *overrides]).model)


def test_two_branches_at_two_scales_with_spatial_channel_and_cross_attention(make_cfg):
    model = tiny_model(make_cfg, *NO_DROPOUT).eval()
    for branch in (model.fine, model.coarse):
        assert isinstance(branch.attention.spatial, SpatialAttention)
        assert isinstance(branch.attention.channel, ChannelAttention)
    image = torch.rand(2, 3, 96, 96)
    fine, coarse = model.branch_maps(image)
    # lite0's stage-5 map of 96 px is 6x6 (stride 16); the coarse branch pools it 2x2
    assert fine.shape == (2, 16, 6, 6) and coarse.shape == (2, 16, 3, 3)
    assert model(image).shape == (2,)
    # cross-branch attention: the fine branch's vector depends on the coarse branch's tokens
    fine_vector, _ = model.pooled(fine, coarse)
    fine_vector_other, _ = model.pooled(fine, coarse.flip(0))
    assert not torch.allclose(fine_vector, fine_vector_other)
    without = tiny_model(make_cfg, *NO_DROPOUT, "model.cross_attention=null").eval()
    fine_vector, _ = without.pooled(fine, coarse)
    torch.testing.assert_close(fine_vector, without.pooled(fine, coarse.flip(0))[0])


def test_training_loss_is_l1_plus_the_weighted_consistency_terms(make_cfg):
    model = tiny_model(
        make_cfg,
        *NO_DROPOUT,
        "model.consistency.cross_branch=0.5",
        "model.consistency.adaptive_pooling=2.0",
    ).train()
    batch = {"image": torch.rand(3, 3, 64, 64), "mos": torch.tensor([0.2, 0.5, 0.9])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a trainer
        loss = model.training_step(batch, 0)
        fine, coarse = model.branch_maps(batch["image"])
        fine_vector, coarse_vector = model.pooled(fine, coarse)
        pred = model(batch["image"])
    expected = (
        (pred - batch["mos"]).abs().mean()
        + 0.5 * cross_branch_consistency_loss(fine_vector, coarse_vector)
        + 2.0 * adaptive_pooling_consistency_loss(fine, coarse)
    )
    torch.testing.assert_close(loss, expected)
    # a zero weight leaves its term out
    model.consistency["adaptive_pooling"] = 0.0
    model(batch["image"])
    assert list(model.auxiliary_losses(batch)) == ["cross_branch_consistency"]
    model.eval()
    model(batch["image"])  # evaluation leaves no terms behind
    assert model.auxiliary_losses(batch) == {}


def test_cached_prefix_maps_score_as_the_pixels(make_cfg):
    model = tiny_model(make_cfg, *NO_DROPOUT).eval()
    image = torch.rand(2, 3, 64, 64)
    from_pixels = model(image)
    cached = model.backbone.forward_prefix(image)
    model.backbone.reads_prefix_features = True
    torch.testing.assert_close(model(cached), from_pixels)


def test_the_map_needs_a_frozen_prefix(make_cfg):
    with pytest.raises(ConfigError, match="needs a frozen prefix of 1..7 stages"):
        tiny_model(make_cfg, "model.backbone.frozen_stages=0")(torch.rand(1, 3, 64, 64))
    with pytest.raises(Exception, match="unknown terms"):  # wrapped by hydra
        tiny_model(make_cfg, "+model.consistency.spatial=1.0")


def test_tiny_msscanet_learns_the_synthetic_set_better_than_chance(make_cfg):
    cfg = make_cfg("train", [*TINY, *NO_DROPOUT, "model.optimizer.lr=3e-3"])
    datamodule = hydra.utils.instantiate(cfg.data, protocol=cfg.protocol)
    datamodule.prepare_data()
    datamodule.setup("fit")
    torch.manual_seed(0)
    model = hydra.utils.instantiate(cfg.model)

    def train_srcc() -> float:
        model.eval()
        with torch.no_grad():
            batches = list(datamodule._loader("train", shuffle=False))
            preds = torch.cat([model.predict_batch(b) for b in batches])
        return spearmanr(preds, torch.cat([b["mos"] for b in batches]))[0]

    before = train_srcc()
    model.train()
    bare_trainer(max_epochs=8, limit_val_batches=0).fit(
        model, train_dataloaders=datamodule.train_dataloader()
    )
    after = train_srcc()
    assert after > 0.6 and after > before + 0.2, (before, after)


def test_msscanet_trains_through_the_entry_point_and_logs_its_consistency_terms(make_cfg):
    import pandas as pd

    quiet = [q for q in QUIET if not q.startswith("logger")]
    cfg = make_cfg("train", ["debug=limit", "logger=csv", "trainer.max_epochs=1", *quiet, *TINY])
    metrics = train(cfg)
    assert np.isfinite(metrics["test/srcc"])
    assert Path(cfg.paths.output_dir, "results.json").is_file()
    logged = pd.concat(pd.read_csv(p) for p in Path(cfg.paths.output_dir).rglob("metrics.csv"))
    for term in ("train/cross_branch_consistency", "train/adaptive_pooling_consistency"):
        assert (logged[term].dropna() >= 0).all() and logged[term].notna().any()
