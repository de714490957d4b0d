"""Iterative mixed-database training (IMDT, StairIQA §III-C, Algorithm 1) as a Lightning run.

Design: one LightningModule with a regressor head per database (``models.stairiqa``) and one
Lightning epoch per epoch of Algorithm 1. The schedule (``data.imdt_schedule``) maps each Lightning
epoch to (loop, database, epoch within that database's block); ``data=mixed`` with ``data.imdt`` set
hands Lightning the active database's training and validation loaders each epoch (the trainer
reloads loaders every epoch). Every image of a batch carries its database, so the loss flows through
that database's head only, while the shared feature extractor is updated by every database.
Lightning keeps driving devices, DDP, precision, logging and checkpoints; a plain ``trainer.fit``
runs it.

- ``PerDatabaseCheckpoint`` implements lines 10-13: after each epoch it validates on the active
  database's own validation split and keeps that database's best model (``best_<db>.ckpt``).
- Resuming from ``last.ckpt`` continues at the same loop, database and epoch: the schedule is a
  function of the epoch, the callback's bests are in the checkpoint, and data order, augmentation
  and dropout are seeded by (seed, epoch).
- ``test_per_database`` tests each database's best model with its own head on its own test split,
  and every head on databases that have no head (the held-out database of ``leave_one_out``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
import pandas as pd
from lightning.pytorch.callbacks import Callback

from iqa_lab.data.imdt_schedule import IMDTSchedule
from iqa_lab.evaluation.outputs import test_predictions
from iqa_lab.training.checkpoints import carry_over

log = logging.getLogger("iqa_lab")


def require_schedule(trainer: L.Trainer) -> IMDTSchedule:
    schedule = getattr(trainer.datamodule, "schedule", None)
    if schedule is None:
        raise ValueError(
            "callbacks=imdt needs data=mixed with data.imdt set (the IMDT schedule); "
            "for a single database use the default callbacks"
        )
    return schedule


class PerDatabaseCheckpoint(Callback):
    """Keeps each database's best model, judged on that database's validation split after each
    of its epochs (Algorithm 1, lines 10-13), as ``<dirpath>/best_<db>.ckpt``.

    It also sets the trainer's epoch count to the schedule's length. The official StairIQA code
    keeps, per database, the model with the highest SRCC on that database's test split (its paper
    says minimum loss): ``protocol.selection=test`` with the default monitor (``val/srcc``, max)
    reproduces it, paper-parity; by default the split is a validation split."""

    def __init__(self, dirpath: str, monitor: str = "val/srcc", mode: str = "max"):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be min or max, got '{mode}'")
        self.dirpath = Path(dirpath)
        self.monitor = monitor
        self.mode = mode
        self.best_scores: dict[str, float] = {}
        self.best_paths: dict[str, str] = {}
        self.best_epochs: dict[str, int] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        schedule = require_schedule(trainer)
        if trainer.max_epochs != schedule.total_epochs:
            log.info(
                "IMDT: %s; the trainer runs %d epochs (trainer.max_epochs=%s is replaced)",
                schedule.describe(),
                schedule.total_epochs,
                trainer.max_epochs,
            )
        trainer.fit_loop.max_epochs = schedule.total_epochs
        trainer.fit_loop.min_epochs = min(trainer.fit_loop.min_epochs or 0, schedule.total_epochs)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = require_schedule(trainer).at(trainer.current_epoch)
        pl_module.log_dict(
            {"imdt/loop": float(step.loop), "imdt/epoch_in_block": float(step.epoch)},
            on_step=False,
            on_epoch=True,
        )

    def _better(self, score: float, best: float | None) -> bool:
        # NaN (e.g. constant predictions on a small validation split) ranks below any number.
        if best is None or math.isnan(best):
            return best is None or not math.isnan(score)
        if math.isnan(score):
            return False
        return score > best if self.mode == "max" else score < best

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        step = require_schedule(trainer).at(trainer.current_epoch)
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise RuntimeError(
                f"PerDatabaseCheckpoint: '{self.monitor}' was not logged in "
                f"validation; logged: {sorted(trainer.callback_metrics)}"
            )
        score = float(value)
        if not self._better(score, self.best_scores.get(step.database)):
            return
        path = self.dirpath / f"best_{step.database}.ckpt"
        trainer.save_checkpoint(path)
        self.best_scores[step.database] = score
        self.best_paths[step.database] = str(path)
        self.best_epochs[step.database] = trainer.current_epoch
        log.info(
            "IMDT: new best %s for %s at epoch %d (loop %d): %.4f",
            self.monitor,
            step.database,
            trainer.current_epoch,
            step.loop,
            score,
        )

    def state_dict(self) -> dict:
        return {
            "best_scores": self.best_scores,
            "best_paths": self.best_paths,
            "best_epochs": self.best_epochs,
            "monitor": self.monitor,
            "mode": self.mode,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.best_scores = dict(state_dict["best_scores"])
        # A run resumed into another folder gets copies of the bests it keeps.
        self.best_paths = {
            db: carry_over(path, Path(path).parent, self.dirpath)
            for db, path in state_dict["best_paths"].items()
        }
        self.best_epochs = dict(state_dict["best_epochs"])

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)


def find_per_database_checkpoint(trainer: L.Trainer) -> PerDatabaseCheckpoint | None:
    found = [c for c in trainer.callbacks if isinstance(c, PerDatabaseCheckpoint)]
    return found[0] if found else None


def test_per_database(
    trainer: L.Trainer, model, datamodule, checkpoints: dict[str, str | None]
) -> pd.DataFrame:
    """Test rows with predictions: each database's test split by its own best model and head;
    databases without a head (held out) by every head's best model, one row per head.

    The frame has the records' columns plus ``prediction`` and ``head``."""
    heads = list(model.head_names)
    tested = set(datamodule.records.loc[datamodule.records["split"] == "test", "db"])
    orphans = sorted(tested - set(heads))
    frames = []
    for head in heads:
        dbs = ([head] if head in tested else []) + orphans
        if not dbs:
            continue
        model.active_head = head
        try:
            trainer.test(
                model, dataloaders=datamodule.test_dataloader(dbs), ckpt_path=checkpoints.get(head)
            )
        finally:
            model.active_head = None
        frames.append(test_predictions(model, datamodule).assign(head=head))
    if not frames:
        raise RuntimeError(
            "no test split to score: the protocol left every database without test images"
        )
    return pd.concat(frames, ignore_index=True)
