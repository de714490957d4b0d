"""Training losses for quality regression, in one place; selected by name from the model config."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from iqa_lab.errors import ConfigError


def plcc_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(1 - PLCC) / 2`` over the batch: scale-free, rewards linear agreement."""
    pred, target = pred - pred.mean(), target - target.mean()
    corr = (pred * target).sum() / (pred.norm() * target.norm() + eps)
    return (1.0 - corr) / 2.0


def mse_plcc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, target) + plcc_loss(pred, target)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": F.mse_loss,
    "l1": F.l1_loss,
    "smooth_l1": F.smooth_l1_loss,
    "plcc": plcc_loss,
    "mse+plcc": mse_plcc_loss,
}


def get_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name not in LOSSES:
        raise ConfigError(f"unknown loss '{name}'; known: {sorted(LOSSES)}")
    return LOSSES[name]
