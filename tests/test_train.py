"""Train and eval end to end on the tiny synthetic database; the run's output files."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from iqa_lab.eval import evaluate
from iqa_lab.train import train
from tests.train_runs import bare_trainer

QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null"]


def _check_outputs(out_dir, synthetic=True, whole_test_split=True):
    results = json.loads((out_dir / "results.json").read_text())
    for key in (
        "metrics",
        "config",
        "git_commit",
        "data",
        "protocol",
        "split",
        "seed",
        "selection",
        "paper_parity",
        "wall_s",
        "bad_inputs",
        "machine",
    ):
        assert key in results, key
    for metric in ("srcc", "plcc", "krcc", "rmse"):
        assert f"test/{metric}" in results["metrics"]
    assert results["data"]["synthetic_labels"] is synthetic
    assert results["selection"] == "val" and results["paper_parity"] is False
    assert results["wall_s"] > 0
    predictions = pd.read_csv(out_dir / "predictions.csv")
    assert {"image", "mos", "prediction", "split"} <= set(predictions.columns)
    assert (predictions["split"] == "test").all()
    assert predictions["image"].is_unique
    if whole_test_split:
        assert len(predictions) == results["data"]["split_sizes"]["test"]
    png = (out_dir / "scatter.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    return results, predictions


def test_fast_dev_run_train_writes_outputs(make_cfg):
    cfg = make_cfg("train", ["debug=fdr"] + QUIET)
    train(cfg)
    results, predictions = _check_outputs(Path(cfg.paths.output_dir), whole_test_split=False)
    # fast_dev_run tests one batch of the test split
    assert len(predictions) == cfg.data.eval_batch_size


def test_train_then_eval_reproduces_test_metrics(make_cfg, tmp_path):
    cfg = make_cfg("train", ["trainer.max_epochs=1", "logger=csv"] + QUIET)
    metrics = train(cfg)
    out = Path(cfg.paths.output_dir)
    results, predictions = _check_outputs(out)
    assert results["checkpoint"] and os.path.isfile(results["checkpoint"])
    assert (out / "csv").is_dir()

    eval_cfg = make_cfg("eval", [f"ckpt_path={results['checkpoint']}", "logger=none"])
    eval_metrics = evaluate(eval_cfg)
    for key in ("test/srcc", "test/plcc", "test/krcc", "test/rmse"):
        assert eval_metrics[key] == pytest.approx(metrics[key], abs=1e-6), key
    eval_predictions = pd.read_csv(Path(eval_cfg.paths.output_dir) / "predictions.csv")
    merged = predictions.merge(eval_predictions, on="image", suffixes=("_train", "_eval"))
    assert len(merged) == len(predictions)
    assert (merged["prediction_train"] - merged["prediction_eval"]).abs().max() < 1e-5


def test_wandb_logger_works_offline_without_account(make_cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    # fast_dev_run would swap every logger for a dummy: run a real (tiny) epoch instead.
    cfg = make_cfg(
        "train",
        [
            "logger=wandb",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=2",
            "+trainer.limit_val_batches=1",
            "+trainer.limit_test_batches=1",
        ]
        + QUIET,
    )
    train(cfg)
    out = Path(cfg.paths.output_dir)
    runs = list(out.rglob("offline-run-*"))
    assert runs, "wandb wrote no offline run"
    assert list(runs[0].glob("*.wandb")), "the offline run holds no data file"


def test_model_learns_on_tiny_set(make_cfg):
    """A few epochs on a tiny training split: the eval-mode error on it falls clearly and the
    ranking becomes right (the whole pipeline can learn)."""
    import hydra
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from iqa_lab.evaluation.metrics import srcc

    cfg = make_cfg(
        "train",
        ["model.optimizer.lr=2e-4", "protocol.train_fraction=0.75", "protocol.val_fraction=0.0"],
    )
    L.seed_everything(0)
    datamodule = hydra.utils.instantiate(cfg.data, protocol=cfg.protocol)
    datamodule.setup("fit")
    model = hydra.utils.instantiate(cfg.model)

    def evaluate_on_train_split():
        model.eval()
        preds, mos = [], []
        with torch.no_grad():
            for batch in DataLoader(datamodule.datasets["train"], batch_size=8):
                preds.append(model(batch["image"]))
                mos.append(batch["mos"])
        preds, mos = torch.cat(preds), torch.cat(mos)
        return float(((preds - mos) ** 2).mean()), srcc(preds.numpy(), mos.numpy())

    before_mse, _ = evaluate_on_train_split()
    trainer = bare_trainer(max_epochs=12, limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=datamodule)
    after_mse, after_srcc = evaluate_on_train_split()
    assert after_mse < 0.5 * before_mse, (before_mse, after_mse)
    assert after_srcc > 0.8, (after_srcc, before_mse, after_mse)
