"""``experiment=biq2021_fast``: multi-level statistics of a frozen backbone, cached once, and a
head that learns from them, on a generated database in BIQ2021's exact layout."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest
from PIL import Image

from iqa_lab.evaluation.metrics import srcc
from iqa_lab.runs import build_trainer, seeded_datamodule
from iqa_lab.training.feature_cache import CachedFeatureDataset, FeatureCache

from .conftest import compose_config

IMAGES = 40


def _noisy_biq2021(root: Path) -> None:
    """Smooth photos with Gaussian noise of growing strength; MOS falls as the noise grows."""
    rng = np.random.default_rng(0)
    (root / "Images").mkdir(parents=True)
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    rows = ["Image Name,MOS,,"]  # the official file: two empty columns, CRLF
    for k, sigma in enumerate(rng.permutation(np.linspace(0, 60, IMAGES))):
        base = 255 * np.stack([xx, yy, (xx + yy) / 2], -1) * rng.uniform(0.5, 1.0)
        pixels = np.clip(base + rng.normal(0, sigma, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / "Images" / f"ss{k:02d}.png")
        rows.append(f"ss{k:02d}.png,{1 - sigma / 60:.4f},,")
    (root / "Train (Images and MOS).csv").write_bytes(("\r\n".join(rows) + "\r\n").encode())


@pytest.fixture
def fast_cfg(tmp_path):
    _noisy_biq2021(tmp_path / "BIQ2021")
    overrides = [
        "experiment=biq2021_fast",
        f"data.data_dir={tmp_path / 'BIQ2021'}",
        "data.transforms.train.resize=[64,64]",
        "data.transforms.eval.resize=[64,64]",
        "trainer.max_epochs=25",
        "callbacks.early_stopping=null",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
    ]
    return compose_config("train", overrides, tmp_path / "run", tmp_path / "cache")


def test_fast_recipe_caches_each_image_once_and_learns(fast_cfg):
    assert fast_cfg.model.backbone.pooling == "stage_mean_std"
    assert fast_cfg.model.backbone.frozen_stages == 8
    datamodule = seeded_datamodule(fast_cfg, "fit")
    model = hydra.utils.instantiate(fast_cfg.model)
    trainer = build_trainer(fast_cfg)
    cache = next(c for c in trainer.callbacks if isinstance(c, FeatureCache))
    trainer.fit(model, datamodule=datamodule)
    # training and evaluation see the same view: one store, each image computed once
    assert sum(cache.computed.values()) == IMAGES
    train_set = datamodule.datasets["train"]
    assert isinstance(train_set, CachedFeatureDataset)
    assert train_set[0]["image"].shape == (model.backbone.num_features,) == (4128,)
    trainer.test(model, datamodule=datamodule, ckpt_path="best")
    predictions = model.test_predictions
    test_set = datamodule.datasets["test"]
    assert len(predictions["prediction"]) == len(test_set) >= 6
    # noise is what the low-level statistics see best: the head ranks the held-out images
    mos_of = dict(zip(np.asarray(test_set.index).tolist(), np.asarray(test_set.mos).tolist()))
    mos = [mos_of[i] for i in np.asarray(predictions["index"]).tolist()]
    assert srcc(np.asarray(predictions["prediction"]), np.asarray(mos)) > 0.7
