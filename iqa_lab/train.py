"""``python -m iqa_lab.train``: fit a model under a protocol, test the validation-selected
checkpoint, write the run's outputs."""

from __future__ import annotations

import logging
import time

import hydra
from omegaconf import DictConfig

from iqa_lab.allocator import set_mmap_threshold
from iqa_lab.cli import run_command
from iqa_lab.data.scoring_recipe import scoring_recipe
from iqa_lab.data.tta import build_tta
from iqa_lab.evaluation.outputs import finish_run, test_predictions
from iqa_lab.phases import PhaseClock
from iqa_lab.runs import build_trainer, reuse_finished_run, seeded_datamodule, task_wrapper
from iqa_lab.training.checkpoints import selection_checkpoint
from iqa_lab.training.feature_cache import FeatureCache
from iqa_lab.training.imdt import find_per_database_checkpoint, test_per_database

log = logging.getLogger("iqa_lab")


@task_wrapper
def train(cfg: DictConfig) -> dict:
    start = time.time()
    set_mmap_threshold(cfg.get("malloc_mmap_threshold_kb"))
    finished = reuse_finished_run(cfg) if cfg.train and cfg.test else None
    if finished is not None:
        return finished["metrics"]
    clock = PhaseClock()
    datamodule = seeded_datamodule(cfg, "fit", clock)
    with clock.phase("model"):
        model = hydra.utils.instantiate(cfg.model, **head_names(cfg, datamodule))
        model.scoring_recipe = scoring_recipe(datamodule)  # in every checkpoint: iqa-score
        trainer = build_trainer(cfg)
    if cfg.train:
        with clock.phase("fit"):
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        clock.carve("fit", "features", feature_cache_seconds(trainer), rest="training")
    if not cfg.test:
        log.info(clock.summary())
        return dict(trainer.callback_metrics)
    per_database = find_per_database_checkpoint(trainer)
    tested = _test_per_database if per_database is not None else _test_best
    model.tta = build_tta(cfg.get("tta"))  # the test only: validation scores plain views
    with clock.phase("test"):
        predictions, extra, checkpoint = tested(cfg, trainer, model, datamodule, per_database)
    if not cfg.train:  # the feature cache (if any) filled while testing
        clock.carve("test", "features", feature_cache_seconds(trainer), rest="test")
    with clock.phase("outputs"):  # results.json's phases_s ends with test: it is written here
        results = finish_run(
            cfg,
            datamodule,
            predictions,
            extra,
            wall_s=time.time() - start,
            trainer=trainer,
            checkpoint=checkpoint,
            remember=cfg.train and not trainer.fast_dev_run,
            phases_s=clock.rounded(),
        )
    print(clock.summary())
    return results["metrics"]


def feature_cache_seconds(trainer) -> float | None:
    """Seconds the frozen-feature cache spent computing or loading features (None: no cache)."""
    cache = next((c for c in trainer.callbacks if isinstance(c, FeatureCache)), None)
    return cache.wall_s if cache is not None else None


def _test_best(cfg: DictConfig, trainer, model, datamodule, _) -> tuple:
    """Test the checkpoint selected on validation: (predictions, extra metrics, checkpoint)."""
    best = None
    selection = selection_checkpoint(trainer)
    # fast_dev_run and callbacks=none keep no checkpoints: they test the weights in hand.
    if cfg.train and selection is not None and not trainer.fast_dev_run:
        best = selection.best_model_path
        if not best:
            raise RuntimeError("no checkpoint was selected on validation (is val/srcc logged?)")
    trainer.test(model, datamodule=datamodule, ckpt_path=best)
    extra = {}
    if best and selection.best_model_score is not None:
        extra["val/srcc"] = float(selection.best_model_score)
    return test_predictions(model, datamodule), extra, best or cfg.get("ckpt_path")


def head_names(cfg: DictConfig, datamodule) -> dict:
    """``heads`` for a multi-head model whose config leaves them null: one per training database
    of ``data=mixed``, else one named after the database."""
    if "heads" not in cfg.model or cfg.model.heads is not None:
        return {}
    return {"heads": list(getattr(datamodule, "training_databases", None) or [datamodule.name])}


def _test_per_database(cfg: DictConfig, trainer, model, datamodule, callback) -> tuple:
    """IMDT: every database tested by its own best model (``training.imdt.test_per_database``):
    (predictions, extra metrics, checkpoints)."""
    # Taken before testing: restoring a checkpoint also restores the callback's earlier state.
    best_paths, best_scores = dict(callback.best_paths), dict(callback.best_scores)
    missing = sorted(set(model.head_names) - set(best_paths))
    if missing and not trainer.fast_dev_run:
        raise RuntimeError(f"IMDT selected no checkpoint for {missing} (was their validation run?)")
    checkpoints = {} if trainer.fast_dev_run else best_paths
    predictions = test_per_database(trainer, model, datamodule, checkpoints)
    extra = {
        f"val/{db}/{callback.monitor.split('/')[-1]}_best": score
        for db, score in best_scores.items()
    }
    return predictions, extra, checkpoints or None


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    metric = cfg.get("optimized_metric")
    return float(metrics[metric]) if metric and metric in metrics else None


if __name__ == "__main__":
    run_command(main)
