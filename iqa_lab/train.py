"""``python -m iqa_lab.train``: fit a model under a protocol, test the validation-selected
checkpoint, write the run's outputs."""

from __future__ import annotations

import time

import hydra
from omegaconf import DictConfig

from iqa_lab.runs import (build_trainer, print_summary, remember_run, reuse_finished_run,
                          seeded_datamodule, task_wrapper, test_predictions, write_run_outputs)


@task_wrapper
def train(cfg: DictConfig) -> dict:
    start = time.time()
    finished = reuse_finished_run(cfg) if cfg.train and cfg.test else None
    if finished is not None:
        print_summary(finished, cfg.paths.output_dir)
        return finished["metrics"]
    datamodule = seeded_datamodule(cfg, "fit")
    model = hydra.utils.instantiate(cfg.model)
    trainer = build_trainer(cfg)
    if cfg.train:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    if not cfg.test:
        return dict(trainer.callback_metrics)
    best = None
    # fast_dev_run and callbacks=none keep no checkpoints: they test the weights in hand.
    if cfg.train and trainer.checkpoint_callback is not None and not trainer.fast_dev_run:
        best = trainer.checkpoint_callback.best_model_path
        if not best:
            raise RuntimeError("no checkpoint was selected on validation (is val/srcc logged?)")
    trainer.test(model, datamodule=datamodule, ckpt_path=best)
    extra = {}
    if best and trainer.checkpoint_callback.best_model_score is not None:
        extra["val/srcc"] = float(trainer.checkpoint_callback.best_model_score)
    predictions = test_predictions(model, datamodule)
    results = write_run_outputs(cfg.paths.output_dir, cfg, datamodule, predictions, extra,
                                wall_s=time.time() - start, trainer=trainer,
                                checkpoint=best or cfg.get("ckpt_path"))
    if cfg.train and not trainer.fast_dev_run:
        remember_run(cfg, results)
    print_summary(results, cfg.paths.output_dir)
    return results["metrics"]


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    metric = cfg.get("optimized_metric")
    return float(metrics[metric]) if metric and metric in metrics else None


if __name__ == "__main__":
    main()
