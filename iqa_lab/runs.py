"""Shared plumbing of the entry points: instantiation from config, the run's output files, and
the summary printed at the end."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path

import hydra
import lightning as L
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from iqa_lab.data.datamodule import IQADataModule
from iqa_lab.evaluation.metrics import summary
from iqa_lab.evaluation.report import scatter_plot
from iqa_lab.evaluation.results import git_commit, machine, write_predictions_csv, write_results_json

log = logging.getLogger("iqa_lab")


def instantiate_group(cfg: DictConfig | None) -> list:
    """Callbacks or loggers: every entry of the group that has a ``_target_``."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values()
            if isinstance(c, DictConfig) and "_target_" in c]


def seeded_datamodule(cfg: DictConfig, stage: str) -> IQADataModule:
    """Seed everything, then build, prepare and set up the run's DataModule."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.hash_cache_dir = cfg.paths.cache_dir
    datamodule.prepare_data()
    datamodule.setup(stage)
    return datamodule


def build_trainer(cfg: DictConfig) -> L.Trainer:
    return hydra.utils.instantiate(cfg.trainer, callbacks=instantiate_group(cfg.get("callbacks")),
                                   logger=instantiate_group(cfg.get("logger")) or False)


def test_predictions(model, datamodule: IQADataModule) -> pd.DataFrame:
    """The test predictions the model collected, joined to their records."""
    if model.test_predictions is None:
        raise RuntimeError("the model collected no test predictions; did trainer.test run?")
    rows = datamodule.records.loc[model.test_predictions["index"]].copy()
    rows["prediction"] = model.test_predictions["prediction"]
    return rows.reset_index(drop=True)


def write_run_outputs(output_dir: str | Path, cfg: DictConfig, datamodule: IQADataModule,
                      predictions: pd.DataFrame, extra_metrics: dict, wall_s: float,
                      trainer: L.Trainer | None = None, checkpoint: str | None = None) -> dict:
    """results.json, predictions.csv and scatter.png; returns the results dict."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    test = predictions[predictions["split"] == "test"]
    metrics = {f"test/{k}": v for k, v in summary(test["prediction"], test["mos"]).items()}
    metrics.update({k: v for k, v in extra_metrics.items() if k not in metrics})
    synthetic = datamodule.name == "synthetic"
    results = {
        "metrics": metrics,
        "metric_scale": "MOS normalised to [0, 1], higher = better (rmse on that scale)",
        "data": {"name": datamodule.name, "data_dir": str(datamodule.data_dir),
                 "synthetic_labels": synthetic, "mos_range": list(datamodule.mos_range),
                 "lower_better": datamodule.lower_better, "split_sizes": datamodule.split_sizes()},
        "protocol": OmegaConf.to_container(cfg.protocol, resolve=True),
        "split": {"seed": datamodule.protocol.split_seed, "repeat": datamodule.protocol.repeat},
        "seed": cfg.get("seed"),
        "selection": datamodule.protocol.selection,
        "paper_parity": datamodule.protocol.selection == "test",
        "wall_s": round(wall_s, 2),
        "bad_inputs": {"count": len(datamodule.bad_inputs), "list": datamodule.bad_inputs},
        "git_commit": git_commit(),
        "machine": machine(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    results["checkpoint"] = checkpoint
    write_predictions_csv(output_dir / "predictions.csv", predictions)
    label = "synthetic pseudo-MOS (normalised)" if synthetic else "MOS (normalised)"
    scatter_plot(test["prediction"], test["mos"], output_dir / "scatter.png",
                 title=f"{cfg.get('task_name', 'run')}: {datamodule.name} test split",
                 mos_label=label)
    write_results_json(output_dir / "results.json", results)
    _log_scatter_to_wandb(trainer, output_dir / "scatter.png")
    return results


def _log_scatter_to_wandb(trainer: L.Trainer | None, path: Path) -> None:
    from lightning.pytorch.loggers import WandbLogger

    for logger in (trainer.loggers if trainer is not None else []):
        if isinstance(logger, WandbLogger):
            logger.log_image(key="test/scatter", images=[str(path)])


def print_summary(results: dict, output_dir: str | Path) -> None:
    from rich.console import Console
    from rich.table import Table

    metrics = results["metrics"]
    title = "test metrics" + (" — SYNTHETIC labels" if results["data"]["synthetic_labels"] else "")
    table = Table(title=title)
    for key in ("srcc", "plcc", "krcc", "rmse"):
        table.add_column(key.upper(), justify="right")
    table.add_row(*(f"{metrics[f'test/{k}']:.4f}" for k in ("srcc", "plcc", "krcc", "rmse")))
    console = Console()
    console.print(table)
    sizes = results["data"]["split_sizes"]
    console.print(f"data: {results['data']['name']} ({sizes}), wall time {results['wall_s']:.0f} s")
    console.print(f"outputs: {Path(output_dir).resolve()}  (results.json, predictions.csv, "
                  f"scatter.png)")


def task_wrapper(task: Callable[[DictConfig], dict]) -> Callable[[DictConfig], dict]:
    """Always say where the outputs are and close wandb, so one failed multirun job does not
    break the others silently."""
    @functools.wraps(task)
    def wrapped(cfg: DictConfig) -> dict:
        start = time.time()
        try:
            return task(cfg)
        except Exception:
            log.exception("run failed")
            raise
        finally:
            log.info("output dir: %s (%.0f s)", cfg.paths.output_dir, time.time() - start)
            try:
                import wandb

                if wandb.run is not None:
                    wandb.finish()
            except ImportError:
                pass
    return wrapped
