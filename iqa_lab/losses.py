"""Training losses for quality regression, in one place; selected by name from the model config
(``model.loss: <name>``, or ``{name: <name>, <weight>: <value>, ...}`` for a loss with weights)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from iqa_lab.errors import ConfigError


def batch_plcc(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation over the batch; 0 where it is undefined (one image, or constant
    predictions or targets), with finite gradients there too."""
    pred, target = pred - pred.mean(), target - target.mean()
    return (pred * target).sum() / (pred.norm() * target.norm()).clamp_min(eps)


def plcc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(1 - PLCC) / 2`` over the batch: scale-free, rewards linear agreement."""
    return (1.0 - batch_plcc(pred, target)) / 2.0


def mse_plcc_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mse_weight: float = 1.0,
    plcc_weight: float = 1.0,
) -> torch.Tensor:
    """``mse_weight · MSE + plcc_weight · (1 - PLCC) / 2`` over the batch (MSLIQA's "weighted
    combination of mean-squared error and PLCC loss", Jamshidi Avanaki et al. 2024)."""
    return mse_weight * F.mse_loss(pred, target) + plcc_weight * plcc_loss(pred, target)


def mae_plcc_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mae_weight: float = 1.0,
    plcc_weight: float = 10.0,
) -> torch.Tensor:
    """QualityNet's loss (Aslam et al., Sci. Reports 2024, Eqs. 38–40):
    ``λ1 · MAE + λ2 · (1 - PLCC)``, the paper's λ1 = 1, λ2 = 10."""
    return mae_weight * F.l1_loss(pred, target) + plcc_weight * (1.0 - batch_plcc(pred, target))


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "mse": F.mse_loss,
    "l1": F.l1_loss,
    "smooth_l1": F.smooth_l1_loss,
    "plcc": plcc_loss,
    "mse+plcc": mse_plcc_loss,
    "mae+plcc": mae_plcc_loss,
}


def get_loss(spec: str | Mapping) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss named ``spec``, or ``spec["name"]`` with the mapping's other keys as its weights."""
    settings = dict(spec) if isinstance(spec, Mapping) else {"name": spec}
    name = settings.pop("name", None)
    if name not in LOSSES:
        raise ConfigError(f"unknown loss '{name}'; known: {sorted(LOSSES)}")
    if not settings:
        return LOSSES[name]
    weights = list(inspect.signature(LOSSES[name]).parameters)[2:]
    unknown = sorted(set(settings) - set(weights))
    if unknown:
        raise ConfigError(
            f"model.loss: '{name}' has no setting {unknown}; its settings: {weights or 'none'}"
        )
    return functools.partial(LOSSES[name], **settings)
