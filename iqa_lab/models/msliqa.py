"""``model=msliqa``: a lightweight timm backbone with one MLP head per zoom level (MSLIQA, Jamshidi
Avanaki et al. 2024, §2–3, Fig. 1).

backbone → global average pooling (over real pixels in a padded batch) → one head per zoom level
(FC 512 → FC 1). The zoom levels are data (``model.zoom_sets``, picked by ``model.zoom``; the train
transform, ``conf/transforms/msliqa.yaml``, gives each image one view per level): each level is a
task with its own head on the shared backbone, and its loss reaches only its own head.

Batching by zoom level (``level_batches``): ``together`` puts one batch per level through the
network in every step (the mean of the levels' losses; every level keeps one static shape) and
``alternate`` one level per step, in turn. ``together`` is the default: it trained more views per
second (``experiments/scripts/msliqa_level_batches.py``, lite0 fine-tuned on the mixed levels
scaled to 192 px images, batch 16, one CPU thread: median 9.7 vs 9.4 views/s over 3 interleaved
rounds), every step sees every level, and an ``alternate`` step still loads every level's views.

Inference: validation scores every head on the eval transform (the full image) and the head with
the best validation SRCC scores the test images (``best_head``, saved in each checkpoint; under
``protocol.selection=test`` validation is the test split). ``head=<level>`` picks one instead; with
``tta=msliqa108`` the chosen head scores the 108 views of ``conf/tta/msliqa108.yaml``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import torch
from torch import nn
from torchmetrics import MeanMetric

from iqa_lab.errors import ConfigError
from iqa_lab.models.base import IQAModule, epoch_metrics
from iqa_lab.nn.backbones import Backbone
from iqa_lab.nn.heads import HeadSet

log = logging.getLogger(__name__)

LEVEL_BATCHES = ("together", "alternate")
BEST_HEAD_KEY = "msliqa_best_head"


def zoom_level_names(zoom: str, zoom_sets: Mapping) -> list[str]:
    """The level names of the zoom set named ``zoom``."""
    if zoom not in zoom_sets:
        raise ConfigError(
            f"model.zoom={zoom}: the zoom sets are {sorted(zoom_sets)}; add one with "
            f"+model.zoom_sets.<name>=[{{name: ..., crop: ..., resize: ...}}, ...]"
        )
    names = [str(level["name"]) for level in zoom_sets[zoom]]
    bad = [name for name in names if not name or "." in name]
    if not names or bad or len(set(names)) != len(names):
        raise ConfigError(
            f"model.zoom: level names {names} must be unique, non-empty and without dots"
        )
    return names


class MSLIQA(IQAModule):
    pretrained_modules = ("backbone",)

    def __init__(
        self,
        backbone: Mapping,
        head: Mapping,
        zoom: str,
        zoom_sets: Mapping,
        level_batches: str = "together",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if level_batches not in LEVEL_BATCHES:
            raise ConfigError(
                f"model.level_batches={level_batches}: one of {LEVEL_BATCHES} (module docstring)"
            )
        self.backbone = Backbone(**backbone)
        self.head_names = zoom_level_names(zoom, zoom_sets)
        self.heads = HeadSet(self.backbone.num_features, self.head_names, **head)
        self.level_batches = level_batches
        self.best_head = self.head_names[0]
        self.level_metrics = nn.ModuleDict({n: epoch_metrics("val/") for n in self.head_names})
        self.level_losses = nn.ModuleDict({n: MeanMetric() for n in self.head_names})

    def explain_layer(self) -> str:
        return f"backbone.{self.backbone.last_stage_name()}"

    def forward(self, image, *, reference=None, mask=None, heads=None) -> torch.Tensor:
        """(N, len(heads)) scores, every head when ``heads`` is None."""
        return self.heads(self.backbone(image, mask=mask), heads or self.head_names)

    def heads_for(self, batch: dict) -> list[str]:
        """``active_head`` (``head=``) when set, else the head chosen on validation."""
        if self.active_head is not None:
            return super().heads_for(batch)
        return [self.best_head]

    def model_step(self, batch: dict, stage: str) -> tuple[torch.Tensor | None, torch.Tensor]:
        target = batch["mos"].float()
        if not len(target):
            return None, target
        views = batch["image"]
        if stage == "train":
            return self._train_step(views, batch.get("mask", {}), target)
        if isinstance(views, Mapping):
            raise ConfigError(
                "model=msliqa evaluates whole images: give data.transforms.eval a single view "
                "(conf/transforms/msliqa.yaml), not zoom levels"
            )
        if stage == "val":
            return self._validation_step(views, batch.get("mask"), target)
        return super().model_step(batch, stage)

    def _train_step(self, views, masks: Mapping, target: torch.Tensor) -> tuple:
        if not isinstance(views, Mapping) or set(views) != set(self.head_names):
            got = sorted(views) if isinstance(views, Mapping) else "one view per image"
            raise ConfigError(
                f"model=msliqa trains on one view per zoom level {self.head_names}, the batch has "
                f"{got}: use the train transform data.transforms.train.zoom of "
                f"conf/transforms/msliqa.yaml (data=mixed: set it for each training database)"
            )
        levels = self.head_names
        if self.level_batches == "alternate":
            levels = [levels[self.global_step % len(levels)]]
        losses, preds = [], []
        for level in levels:
            pred = self.score(views[level], mask=masks.get(level), heads=[level])[:, 0]
            losses.append(self.loss_fn(pred, target))
            preds.append(pred.detach())
        loss = torch.stack(losses).mean()
        metrics, mean_loss = self._stage_metrics("train")
        mean_loss.update(loss.detach(), weight=len(target))
        metrics.update(torch.stack(preds).mean(dim=0), target)
        return loss, preds[0]

    def _validation_step(self, image, mask, target) -> tuple:
        scores = self.score(image, mask=mask)
        for column, level in enumerate(self.head_names):
            pred = scores[:, column]
            self.level_metrics[level].update(pred, target)
            self.level_losses[level].update(self.loss_fn(pred, target), weight=len(target))
        return None, scores

    def _log_epoch(self, stage: str) -> dict[str, torch.Tensor]:
        """Validation: every level's metrics (``val/<level>/srcc``, …); the headline ``val/…``
        are those of the level with the best SRCC, which becomes ``best_head``."""
        if stage != "val":
            return super()._log_epoch(stage)
        per_level = {}
        for level in self.head_names:
            values = self.level_metrics[level].compute()
            values["val/loss"] = self.level_losses[level].compute()
            self.level_metrics[level].reset()
            self.level_losses[level].reset()
            per_level[level] = values

        def srcc(level: str) -> float:
            value = float(per_level[level]["val/srcc"])
            return -math.inf if math.isnan(value) else value

        self.best_head = max(self.head_names, key=srcc)
        best = per_level[self.best_head]
        logged = {
            f"val/{level}/{key.removeprefix('val/')}": value
            for level, values in per_level.items()
            for key, value in values.items()
        }
        logged["val/best_head"] = torch.tensor(float(self.head_names.index(self.best_head)))
        self.log_dict(best, prog_bar=True, sync_dist=False)
        self.log_dict(logged, prog_bar=False, sync_dist=False)
        return best

    def on_train_start(self) -> None:
        super().on_train_start()
        for level in self.head_names:
            self.level_metrics[level].reset()
            self.level_losses[level].reset()

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        head = self.active_head or self.best_head
        log.info("MSLIQA scores the test images with head '%s'", head)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[BEST_HEAD_KEY] = self.best_head

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.best_head = checkpoint.get(BEST_HEAD_KEY, self.best_head)
