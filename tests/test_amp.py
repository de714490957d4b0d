"""Mixed precision: ``trainer=gpu`` trains in 16-bit mixed precision, and ``bf16-mixed`` trains on
CPU with a finite float32 loss; scores and metrics stay float32, pooling keeps its digits."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pandas as pd
import torch

from iqa_lab.nn.pooling import masked_mean_std_pool
from iqa_lab.train import train

QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null", "logger=none"]
FEW_STEPS = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
]


def test_the_gpu_trainer_uses_16_bit_mixed_precision(make_cfg):
    trainer = make_cfg("train", ["trainer=gpu"]).trainer
    assert (trainer.accelerator, trainer.precision) == ("gpu", "16-mixed")


class LossesAndScores(L.Callback):
    """Every training step's loss, and the dtype of the model's scores under the step's
    autocast."""

    def __init__(self):
        self.losses, self.score_dtypes = [], set()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].detach())
        module.eval()  # no BatchNorm statistics moved by the probe
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            self.score_dtypes.add(module.score(batch["image"][:2]).dtype)
        module.train()


def test_bf16_mixed_trains_on_cpu_with_a_finite_float32_loss(make_cfg, monkeypatch):
    # stage_mean_std: the multi-level mean + std pooling runs under autocast too
    cfg = make_cfg(
        "train",
        [
            "trainer.precision=bf16-mixed",
            "model.backbone.pooling=stage_mean_std",
            "model.loss=mse+plcc",
        ]
        + FEW_STEPS
        + QUIET,
    )
    seen = LossesAndScores()
    import iqa_lab.train as train_module

    build = train_module.build_trainer

    def with_probe(cfg):
        trainer = build(cfg)
        assert trainer.precision == "bf16-mixed"
        trainer.callbacks.append(seen)
        return trainer

    monkeypatch.setattr(train_module, "build_trainer", with_probe)
    metrics = train(cfg)
    assert seen.losses, "no training step ran"
    assert all(loss.dtype == torch.float32 and torch.isfinite(loss) for loss in seen.losses)
    assert seen.score_dtypes == {torch.float32}  # the metrics see float32 scores
    for key in ("test/srcc", "test/plcc", "test/rmse"):
        assert math.isfinite(float(metrics[key])), key
    predictions = pd.read_csv(Path(cfg.paths.output_dir) / "predictions.csv")
    assert predictions["prediction"].notna().all() and predictions["prediction"].abs().lt(1e3).all()


def test_mean_std_pooling_keeps_the_spread_of_bfloat16_features():
    # A channel whose spread is small beside its mean: E[x²] - E[x]² in bfloat16 (8-bit mantissa)
    # loses it entirely (0.707 or 0.001 instead of ~0.1).
    generator = torch.Generator().manual_seed(0)
    features = (10 + 0.1 * torch.randn(2, 3, 8, 8, generator=generator)).bfloat16()
    pooled = masked_mean_std_pool(features)
    assert pooled.dtype == torch.bfloat16 and pooled.shape == (2, 6)
    true = features.double()
    assert torch.allclose(pooled[:, :3].double(), true.mean(dim=(2, 3)), rtol=1e-2)
    assert torch.allclose(pooled[:, 3:].double(), true.std(dim=(2, 3), unbiased=False), rtol=2e-2)
    mask = torch.ones(2, 8, 8)
    assert torch.equal(masked_mean_std_pool(features, mask), pooled)
