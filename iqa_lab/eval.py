"""``python -m iqa_lab.eval ckpt_path=…``: evaluate a trained checkpoint on a database's test split
under a protocol and write the run's outputs. The model is rebuilt from the checkpoint alone;
``tta=<conf/tta name>`` scores each image as the mean over a test-time augmentation's views.

``python -m iqa_lab.eval model=classical model.metric=…``: a model that needs no checkpoint
(classical measures, ``iqa_lab.models.classical``) scores the same test split through
``model.predict(datamodule)``; the outputs are the same files.

``quality_maps=<dir>``: a model that predicts quality maps (``model=mlms_fr``) also writes one
heat-map picture per test image there (``evaluation.quality_maps``)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from iqa_lab.cli import run_command
from iqa_lab.data.tta import build_tta
from iqa_lab.errors import ConfigError, MissingFileError
from iqa_lab.evaluation.outputs import finish_run, test_predictions
from iqa_lab.evaluation.quality_maps import write_quality_maps
from iqa_lab.models.base import load_iqa_module
from iqa_lab.runs import build_trainer, reuse_finished_run, seeded_datamodule, task_wrapper

log = logging.getLogger(__name__)


@task_wrapper
def evaluate(cfg: DictConfig) -> dict:
    start = time.time()
    finished = reuse_finished_run(cfg)
    if finished is not None:
        return finished["metrics"]
    if not cfg.get("ckpt_path") and not cfg.get("model"):
        raise ConfigError(
            "eval needs ckpt_path=<trained checkpoint> or model=<a model without "
            "checkpoint, e.g. model=classical model.metric=brisque_live>"
        )
    if cfg.get("ckpt_path") and not Path(cfg.ckpt_path).expanduser().is_file():
        raise MissingFileError(
            f"ckpt_path={cfg.ckpt_path}: no such checkpoint; give a trained run's "
            f"checkpoints/<name>.ckpt"
        )
    if not cfg.get("ckpt_path"):
        return _evaluate_without_checkpoint(cfg, start)
    datamodule = seeded_datamodule(cfg, "test")
    model = load_iqa_module(cfg.ckpt_path)
    model.active_head = choose_head(model, cfg.get("head"), datamodule)
    model.tta = build_tta(cfg.get("tta"))
    trainer = build_trainer(cfg)
    trainer.test(model, datamodule=datamodule)
    if cfg.get("quality_maps"):
        test_quality_maps(model, datamodule, cfg.quality_maps)
    results = finish_run(
        cfg,
        datamodule,
        test_predictions(model, datamodule),
        {},
        wall_s=time.time() - start,
        trainer=trainer,
        checkpoint=cfg.ckpt_path,
    )
    return results["metrics"]


def test_quality_maps(model, datamodule, out_dir: str) -> None:
    """One quality-map picture per test image in ``out_dir``, named after the image's record."""
    images = datamodule.records["image"]
    batches = (
        (batch, images.loc[batch["index"].numpy()].tolist())
        for batch in datamodule.test_dataloader()
    )
    written = write_quality_maps(model, batches, out_dir)
    log.info("quality maps of %d test images in %s", len(written), out_dir)


def choose_head(model, head: str | None, datamodule) -> str | None:
    """The head that scores every image: ``head=`` if given, else the one named like the
    database; None lets a mixed database's images pick their own."""
    names = getattr(model, "head_names", None) or []
    if head is not None and head not in names:
        raise ConfigError(f"head={head}: the checkpoint has heads {names}; pick one of them")
    if head is None and datamodule.name in names:
        return datamodule.name
    return head


def _evaluate_without_checkpoint(cfg: DictConfig, start: float) -> dict:
    datamodule = seeded_datamodule(cfg, "test")
    model = hydra.utils.instantiate(cfg.model)
    results = finish_run(
        cfg, datamodule, model.predict(datamodule), dict(model.extra), wall_s=time.time() - start
    )
    return results["metrics"]


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    run_command(main)
