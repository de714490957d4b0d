"""Training-step timings on one set of batches: the bare PyTorch loop, Lightning's training loop,
the data loader alone, and a Lightning epoch fed by the configured loader. Each timing skips its
first ``warmup`` batches (worker start-up, first-call allocations) and times the next ones."""

from __future__ import annotations

import copy
import itertools
import time
from dataclasses import dataclass

import hydra
import lightning as L
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader


@dataclass
class Timing:
    """``images`` processed in ``seconds`` (the timed batches only)."""

    images: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")


def fastest(timings: list[Timing]) -> Timing:
    """The timing with the highest throughput (the least disturbed by other work)."""
    return max(timings, key=lambda timing: timing.per_second)


def batch_size(batch: dict) -> int:
    return len(batch["mos"])


def preload(loader: DataLoader, count: int) -> list[dict]:
    """The first ``count`` batches of ``loader``, kept in memory."""
    batches = list(itertools.islice(iter(loader), count))
    if len(batches) < count:
        raise ValueError(
            f"the training split gives {len(batches)} batches, the bench needs {count} "
            f"(bench.warmup_batches + bench.batches): lower them or use a larger database"
        )
    return batches


def time_loader(loader: DataLoader, warmup: int, count: int) -> Timing:
    """Throughput of the loader alone (decode, transform, collate; its configured workers)."""
    batches = iter(loader)
    for _ in range(warmup):
        next(batches)
    images, start = 0, time.perf_counter()
    for batch in itertools.islice(batches, count):
        images += batch_size(batch)
    return Timing(images, time.perf_counter() - start)


def _optimizer(model: L.LightningModule) -> torch.optim.Optimizer:
    configured = model.configure_optimizers()
    if isinstance(configured, dict):
        return configured["optimizer"]
    return configured[0] if isinstance(configured, (list, tuple)) else configured


def time_bare_loop(model: L.LightningModule, batches: list[dict], warmup: int) -> Timing:
    """The model's training step in a plain PyTorch loop (forward, loss, backward, optimizer
    step) over in-memory batches: model-only throughput."""
    model = copy.deepcopy(model)
    model.train()
    optimizer = _optimizer(model)
    images, start = 0, None
    for i, batch in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss_fn(model.predict_batch(batch), batch["mos"].float())
        loss.backward()
        optimizer.step()
        if i >= warmup:
            images += batch_size(batch)
    return Timing(images, time.perf_counter() - start)


class BatchClock(L.Callback):
    """Times Lightning's training batches after the first ``warmup`` ones."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.images = 0
        self.start: float | None = None
        self.end: float | None = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if batch_idx >= self.warmup:
            self.images += batch_size(batch)
            self.end = time.perf_counter()

    def timing(self) -> Timing:
        if self.start is None or self.end is None:
            raise ValueError(
                f"the epoch had no batch after the {self.warmup} warm-up batches: "
                f"lower bench.warmup_batches or use a larger training split"
            )
        return Timing(self.images, self.end - self.start)


def bench_trainer(cfg: DictConfig, batches: int | None, clock: BatchClock) -> L.Trainer:
    """The run's trainer config for one training epoch of ``batches`` batches (None: all),
    without validation, checkpoints, loggers or a progress bar."""
    return hydra.utils.instantiate(
        cfg.trainer,
        max_epochs=1,
        min_epochs=1,
        limit_train_batches=1.0 if batches is None else batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[clock],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def time_lightning(cfg, model, batches: list[dict], warmup: int) -> Timing:
    """Lightning's training loop on the same in-memory batches as ``time_bare_loop``."""
    clock = BatchClock(warmup)
    loader = DataLoader(batches, batch_size=None, shuffle=False, collate_fn=_as_is)
    bench_trainer(cfg, len(batches), clock).fit(copy.deepcopy(model), train_dataloaders=loader)
    return clock.timing()


def time_epoch(cfg, model, datamodule, warmup: int, batches: int | None) -> Timing:
    """A Lightning training epoch fed by the DataModule's own loader (its workers, decode and
    transforms): end-to-end training throughput."""
    clock = BatchClock(warmup)
    bench_trainer(cfg, batches, clock).fit(copy.deepcopy(model), datamodule=datamodule)
    return clock.timing()


def _as_is(batch):
    return batch
