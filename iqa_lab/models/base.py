"""IQAModule: the LightningModule every architecture derives from.

The contract, one for every architecture:

- ``forward(image, *, reference=None, mask=None, heads=None)`` returns ``(B,)`` scores, or
  ``(B, len(heads))`` for a model with one regressor per database (``head_names``: each image is
  then scored by its own database's head, the batch's ``db``, or by ``active_head``). ``reference``
  is the pristine reference under the image's geometry (full-reference models), ``mask`` the
  ``(B, H, W)`` real-pixel mask of a padded native-resolution batch (``data.collate=pad``).
- ``needs``: what the model needs from a batch beyond the image (``{"reference"}``); the
  DataModule provides it when the model is set up, or refuses the run naming the database.
- ``pretrained_modules``: the attribute names of the pretrained submodules (one or several
  encoders, built with ``nn.backbones``). They train at the optimizer's learning rate (everything
  else at ``head_lr_multiplier`` times it), keep their BatchNorm statistics under ``freeze_bn``,
  and ``load_iqa_module`` rebuilds them without fetching or reading any weights.
- ``score`` is the one place where views are averaged: a ``(B, V, C, H, W)`` batch (five crops)
  is scored as the mean over its ``V`` views; with test-time augmentation (``tta``, a
  ``data.tta.TestTimeAugmentation``, set by ``iqa-score tta=…`` and ``iqa_lab.eval tta=…``) the
  mean over the recipe's views of each image, scored in bounded chunks.
- ``output_map``: a model trained with a scale-free loss (``losses.fits_linear_map``: Norm-in-Norm)
  maps its outputs onto MOS by least squares (``nn.linear_map.LinearOutputMap``), fitted at the
  end of every validation epoch on that epoch's validation outputs, so the checkpoint selected on
  validation holds the map of its own epoch; test, ``predict`` and ``iqa-score`` scores are mapped,
  the loss always sees the raw outputs, and validation metrics are those of the mapped outputs.
- ``init_from``: a checkpoint whose weights a fit starts from (weights only: optimizer, epoch and
  callback state start fresh; ``ckpt_path`` is the resume). The shared network must match it
  exactly; per-database heads (``database_heads``) load where the checkpoint has that database.

``auxiliary_losses``: weighted extra terms of a training step (a model's consistency or
multi-task losses), added to the loss and logged by name.

Steps, loss, epoch-level metrics, logging, optimisers and test predictions live here.

Metrics are torchmetrics objects accumulated over the whole epoch (SRCC over per-batch averages
would be wrong) and synchronised across processes. Keys: ``{train,val,test}/{srcc,plcc,krcc,rmse,
loss}``; ``val/srcc`` drives checkpointing and early stopping.
"""

from __future__ import annotations

import importlib
import logging
import os
import random
from collections.abc import Mapping

import hydra
import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torchmetrics import MaxMetric, MeanMetric

from iqa_lab.data.scoring_recipe import CHECKPOINT_KEY as SCORING_KEY
from iqa_lab.data.tta import TestTimeAugmentation
from iqa_lab.errors import ConfigError, MissingFileError
from iqa_lab.evaluation.epoch_metrics import IQAEpochMetrics
from iqa_lab.losses import fits_linear_map, get_loss
from iqa_lab.nn.backbones import no_pretrained_weights
from iqa_lab.nn.linear_map import LinearOutputMap

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test")


def epoch_metrics(prefix: str) -> IQAEpochMetrics:
    """SRCC / PLCC / KRCC / RMSE over the whole epoch, by ``evaluation.metrics``' definitions."""
    return IQAEpochMetrics(prefix=prefix)


class IQAModule(L.LightningModule):
    needs: frozenset[str] = frozenset()
    pretrained_modules: tuple[str, ...] = ()
    # The attribute holding one regressor per database (a ModuleDict by database name), if any.
    database_heads: str | None = None

    def __init__(
        self,
        optimizer: Mapping,
        scheduler: Mapping | None = None,
        loss: str | Mapping = "mse",
        freeze_bn: bool = False,
        head_lr_multiplier: float = 1.0,
        init_from: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(logger=False)
        # Plain containers only: checkpoints stay readable and load with weights_only=True.
        for key, value in self.hparams.items():
            if isinstance(value, (DictConfig, ListConfig)):
                self.hparams[key] = OmegaConf.to_container(value, resolve=True)
        self.loss_fn = get_loss(loss)
        self.output_map = LinearOutputMap() if fits_linear_map(self.loss_fn) else None
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        for stage in STAGES:
            setattr(self, f"{stage}_metrics", epoch_metrics(f"{stage}/"))
            setattr(self, f"{stage}_loss", MeanMetric())
        self.val_srcc_best = MaxMetric()
        self.test_predictions: dict[str, np.ndarray] | None = None
        self._test_outputs: list[dict[str, torch.Tensor]] = []
        # Multi-head models: the database of each head, and the head that scores every image
        # when set (testing one head on another database, or eval of a chosen head).
        self.head_names: list[str] | None = None
        self.active_head: str | None = None
        # How new images are scored as this run evaluated them (``data.scoring_recipe``): set by
        # the training entry point, stored in every checkpoint, read back on load.
        self.scoring_recipe: dict | None = None
        # Test-time augmentation at evaluation and scoring (not saved: a choice of the command).
        self.tta: TestTimeAugmentation | None = None

    def forward(
        self,
        image: torch.Tensor,
        *,
        reference: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        heads: list[str] | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def quality_map(
        self,
        image: torch.Tensor,
        *,
        reference: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """A ``(B, h, w)`` map of local quality (low = worse) for a model that predicts one
        (``eval quality_maps=<dir>``, ``iqa-score quality_maps=<dir>`` write it as images); None
        for a model that does not."""
        return None

    def explain_layer(self) -> str:
        """The submodule (``get_submodule`` name) whose feature maps Grad-CAM explains by
        default (``iqa-explain``): here the last ``Conv2d`` of the first pretrained module, or of
        the whole model; architectures name a better one (their last backbone stage)."""
        parts = self.pretrained_parts()
        prefix, root = next(iter(parts.items()), ("", self))
        convs = [n for n, m in root.named_modules() if isinstance(m, torch.nn.Conv2d)]
        if not convs:
            raise ConfigError(
                f"{type(self).__name__} has no Conv2d layer to explain; give target_layer=<name "
                f"of a submodule with (B, C, H, W) outputs>"
            )
        return f"{prefix}.{convs[-1]}" if prefix else convs[-1]

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "provide"):
            datamodule.provide(self.needs)
        # Before Lightning restores a resumed checkpoint (ckpt_path), which then wins.
        if stage == "fit" and self.hparams.get("init_from"):
            self.load_initial_weights(self.hparams.init_from)

    def load_initial_weights(self, path: str) -> None:
        """Copy another run's weights into this model (``init_from``): every tensor of the shared
        network, and the heads of the databases both have; nothing else of the checkpoint."""
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise MissingFileError(
                f"model.init_from={path}: no such checkpoint; give a run's checkpoints/*.ckpt"
            ) from None
        if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
            raise ConfigError(
                f"model.init_from={path} is not a Lightning checkpoint (no state_dict)"
            )
        theirs, own = checkpoint["state_dict"], self.state_dict()
        prefix = f"{self.database_heads}." if self.database_heads else None

        def shared(keys) -> set:
            return {k for k in keys if prefix is None or not k.startswith(prefix)}

        missing = sorted(shared(own) - shared(theirs))
        unexpected = sorted(shared(theirs) - shared(own))
        reshaped = sorted(
            k for k in shared(own) & shared(theirs) if own[k].shape != theirs[k].shape
        )
        if missing or unexpected or reshaped:
            raise ConfigError(
                f"model.init_from={path}: its architecture does not match this model "
                f"({type(self).__name__}): missing {missing[:5]}, unexpected {unexpected[:5]}, "
                f"other shapes {reshaped[:5]} (of {len(missing)}, {len(unexpected)}, "
                f"{len(reshaped)}); start from a checkpoint of the same model config"
            )
        heads = {k for k in own if k not in shared(own) and k in theirs}
        wrong = sorted(k for k in heads if own[k].shape != theirs[k].shape)
        if wrong:
            raise ConfigError(
                f"model.init_from={path}: head tensors of another shape {wrong[:5]}; "
                f"start from a checkpoint of the same model config"
            )
        loaded = shared(own) | heads
        self.load_state_dict({k: theirs[k] for k in loaded}, strict=False)
        fresh = sorted({k.split(".")[1] for k in set(own) - loaded})
        log.info(
            "model.init_from=%s: %d tensors loaded (weights only)%s",
            path,
            len(loaded),
            f"; heads {fresh} start fresh" if fresh else "",
        )

    def _stage_metrics(self, stage: str) -> tuple[IQAEpochMetrics, MeanMetric]:
        return getattr(self, f"{stage}_metrics"), getattr(self, f"{stage}_loss")

    def score(
        self,
        image: torch.Tensor,
        *,
        reference: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        heads: list[str] | None = None,
    ) -> torch.Tensor:
        """(B,) scores, or (B, len(heads)) from the named heads of a multi-head model; a
        ``(B, V, C, H, W)`` batch of views (e.g. five crops; a reference has the same views) is
        scored as the mean over its views; under ``tta`` each image (each of its views) is
        augmented by the recipe and scored as the mean over all its views. ``image`` may be a
        mapping of cached features of several frozen backbones (``training.feature_cache``), one
        view each."""
        if isinstance(image, Mapping):
            return self(image, reference=reference, mask=mask, heads=heads).float()
        if not len(image):
            return torch.empty(0, device=image.device)
        if "reference" in self.needs and reference is None:
            raise ValueError(
                f"{type(self).__name__} needs a reference image in every batch; the "
                f"DataModule provides it once told (datamodule.provide(model.needs))"
            )
        if self.tta is not None:
            return self.tta(self.score_views, image, reference=reference, mask=mask, heads=heads)
        return self.score_views(image, reference=reference, mask=mask, heads=heads)

    def score_views(
        self,
        image: torch.Tensor,
        *,
        reference: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        heads: list[str] | None = None,
    ) -> torch.Tensor:
        """``score`` without test-time augmentation."""
        if image.dim() == 5:
            batch, views = image.shape[:2]
            if mask is not None:
                mask = mask[:, None].expand(batch, views, *mask.shape[1:]).flatten(0, 1)
            if reference is not None:
                reference = reference.flatten(0, 1)
            scores = self(image.flatten(0, 1), reference=reference, mask=mask, heads=heads).float()
            return scores.view(batch, views, *scores.shape[1:]).mean(dim=1)
        return self(image, reference=reference, mask=mask, heads=heads).float()

    def heads_for(self, batch: dict) -> list[str] | None:
        """The heads a batch needs: ``active_head``, else its images' databases. Only those are
        computed, so no other head gets a gradient (not even a zero one that Adam's momentum or
        weight decay would act on)."""
        names = self.head_names
        if not names:
            return None
        if self.active_head is not None:
            if self.active_head not in names:
                raise ConfigError(f"head '{self.active_head}' does not exist; heads: {names}")
            return [self.active_head]
        if len(names) == 1:
            return list(names)
        dbs = batch.get("db")
        unknown = sorted({db for db in dbs or [] if db not in names})
        if dbs is None or unknown:
            raise ConfigError(
                f"cannot choose among the heads {names} for images of "
                f"{unknown or 'an unnamed database'}: pick one with head=<name>"
            )
        return [name for name in names if name in set(dbs)]

    def predict_batch(self, batch: dict, mapped: bool = True) -> torch.Tensor:
        """(B,) scores, each image by its own database's head in a multi-head model; through
        ``output_map`` when the model has one, unless ``mapped=False`` (the raw outputs)."""
        scores = self._predict_raw(batch)
        if mapped and self.output_map is not None:
            return self.output_map(scores)
        return scores

    def _predict_raw(self, batch: dict) -> torch.Tensor:
        heads = self.heads_for(batch)
        scores = self.score(
            batch["image"], reference=batch.get("reference"), mask=batch.get("mask"), heads=heads
        )
        if heads is None or not len(scores):
            return scores
        if len(heads) == 1:
            return scores[:, 0]
        columns = torch.tensor([heads.index(db) for db in batch["db"]], device=scores.device)
        return scores.gather(1, columns[:, None]).squeeze(1)

    def model_step(self, batch: dict, stage: str) -> tuple[torch.Tensor | None, torch.Tensor]:
        target = batch["mos"].float()
        if not len(target):  # every item of the batch failed to decode (data.on_bad=skip)
            return None, target
        raw = self.predict_batch(batch, mapped=False)
        loss = self.loss_fn(raw, target)
        metrics, mean_loss = self._stage_metrics(stage)
        mean_loss.update(loss.detach(), weight=len(target))
        if self.output_map is None:
            metrics.update(raw.detach(), target)
            return loss, raw
        if stage == "val":  # metrics after this epoch's map is fitted (on_validation_epoch_end)
            self._val_outputs.append((raw.detach(), target))
            return loss, raw
        pred = self.output_map(raw.detach())
        metrics.update(pred, target)
        return loss, pred

    def fit_output_map(self) -> None:
        """Fit ``output_map`` on this validation epoch's outputs and score them with it."""
        if self.output_map is None or not self._val_outputs:
            return
        raw, target = (torch.cat(parts) for parts in zip(*self._val_outputs))
        self._val_outputs = []
        if not self.output_map.fit(raw, target):
            log.warning("output_map: %d constant validation outputs; map left as it was", len(raw))
        self.val_metrics.update(self.output_map(raw), target)

    def auxiliary_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """Further weighted loss terms of this training step, by name; the training step adds
        them to the loss and logs each as ``train/<name>`` (``train/loss`` stays the loss on
        the scores alone). Called right after the step's forward pass, so a model may return
        terms of what that pass computed (MS-SCANet's consistency between its branches) or run
        another pass (the unified FR/NR model's other mode). None by default."""
        return {}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, _ = self.model_step(batch, "train")
        if loss is None:
            return None  # Lightning skips the optimizer step
        for name, value in self.auxiliary_losses(batch).items():
            self.log(f"train/{name}", value.detach(), on_step=False, on_epoch=True)
            loss = loss + value
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.model_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        _, pred = self.model_step(batch, "test")
        self._test_outputs.append({"index": batch["index"], "prediction": pred.detach()})

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.predict_batch(batch)

    def _log_epoch(self, stage: str) -> dict[str, torch.Tensor]:
        metrics, mean_loss = self._stage_metrics(stage)
        values = metrics.compute()
        values[f"{stage}/loss"] = mean_loss.compute()
        metrics.reset()
        mean_loss.reset()
        self.log_dict(values, prog_bar=stage != "train", sync_dist=False)
        return values

    def on_train_start(self) -> None:
        # The sanity check must not leak into the first epoch's validation metrics.
        for metric in self._stage_metrics("val"):
            metric.reset()
        self.val_srcc_best.reset()

    def on_train_epoch_start(self) -> None:
        # Dropout and other in-step randomness depend on (seed, epoch) only, so a run resumed from
        # an epoch's checkpoint continues exactly as the uninterrupted run (the data order and
        # augmentation are seeded per epoch by the DataModule).
        seed = (int(os.environ.get("PL_GLOBAL_SEED", 0)) * 1_000_003 + self.current_epoch) % 2**32
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        if self.hparams.freeze_bn:
            # Keep the pretrained BatchNorm statistics (the official StairIQA code trains with
            # model.eval()); affine parameters still learn.
            for part in self.pretrained_parts(required_by="model.freeze_bn=true").values():
                for module in part.modules():
                    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                        module.eval()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self.fit_output_map()
        values = self._log_epoch("val")
        if not self.trainer.sanity_checking:
            self.val_srcc_best.update(values["val/srcc"])
            self.log("val/srcc_best", self.val_srcc_best.compute(), prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self._test_outputs = []

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        index = torch.cat([o["index"] for o in self._test_outputs])
        prediction = torch.cat([o["prediction"] for o in self._test_outputs])
        if self.trainer.world_size > 1:
            index = self.all_gather(index).flatten()
            prediction = self.all_gather(prediction).flatten()
        # Distributed samplers pad with repeats: keep one prediction per record.
        index, first = np.unique(index.cpu().numpy(), return_index=True)
        self.test_predictions = {"index": index, "prediction": prediction.cpu().numpy()[first]}
        self._test_outputs = []

    def configure_optimizers(self):
        make_optimizer = hydra.utils.instantiate(self.hparams.optimizer, _partial_=True)
        optimizer = make_optimizer(params=self.param_groups())
        if self.hparams.scheduler is None:
            return optimizer
        settings = dict(self.hparams.scheduler)
        # A scheduler that reads a validation metric (ReduceLROnPlateau) names it in `monitor`.
        monitor = settings.pop("monitor", None)
        scheduler = hydra.utils.instantiate(settings, optimizer=optimizer)
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and not monitor:
            raise ConfigError(
                f"model.scheduler {settings['_target_']} steps on a validation metric: name it, "
                f"e.g. model.scheduler.monitor=val/loss (with mode: min)"
            )
        schedule = {"scheduler": scheduler, "interval": "epoch"}
        if monitor:
            schedule["monitor"] = monitor
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    def pretrained_parts(self, required_by: str | None = None) -> dict[str, torch.nn.Module]:
        """The declared pretrained submodules (``pretrained_modules``) by name."""
        parts = {}
        for name in self.pretrained_modules:
            try:
                parts[name] = self.get_submodule(name)
            except AttributeError:
                raise ValueError(
                    f"{type(self).__name__}.pretrained_modules names '{name}', "
                    f"which is not one of its submodules"
                ) from None
        if required_by and not parts:
            raise ValueError(
                f"{required_by} needs pretrained submodules, and "
                f"{type(self).__name__} declares none (pretrained_modules)"
            )
        return parts

    def param_groups(self) -> list[dict]:
        """Parameters of the pretrained submodules at the optimizer's learning rate, everything
        else (heads, fusion layers: randomly initialised) at ``head_lr_multiplier`` times it."""
        pretrained_ids = {
            id(p) for part in self.pretrained_parts().values() for p in part.parameters()
        }
        pretrained = [p for p in self.parameters() if id(p) in pretrained_ids]
        others = [p for p in self.parameters() if id(p) not in pretrained_ids]
        lr = self.hparams.optimizer["lr"]
        groups = [
            {"params": pretrained, "lr": lr},
            {"params": others, "lr": lr * self.hparams.head_lr_multiplier},
        ]
        return [g for g in groups if g["params"]]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["iqa_lab_class"] = f"{type(self).__module__}.{type(self).__qualname__}"
        if self.scoring_recipe is not None:
            checkpoint[SCORING_KEY] = self.scoring_recipe

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.scoring_recipe = checkpoint.get(SCORING_KEY, self.scoring_recipe)


def load_iqa_module(ckpt_path: str, map_location: str = "cpu") -> IQAModule:
    """Rebuild a trained model from its checkpoint alone (the class is recorded inside).

    Its pretrained parts are built without weights (no download, no weights file read): the
    checkpoint holds the trained ones, and loading it is strict."""
    checkpoint = torch.load(ckpt_path, map_location=map_location, weights_only=True)
    if "iqa_lab_class" not in checkpoint:
        raise ConfigError(
            f"ckpt_path={ckpt_path} was not written by an iqa_lab model (no iqa_lab_class)"
        )
    module_name, class_name = checkpoint["iqa_lab_class"].rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), class_name)
    with no_pretrained_weights():
        return cls.load_from_checkpoint(ckpt_path, map_location=map_location)
