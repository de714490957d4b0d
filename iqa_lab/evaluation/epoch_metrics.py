"""Epoch-level metrics for the LightningModules: torchmetrics accumulation (whole epoch, synced
across processes) over the same pure definitions as ``evaluation.metrics``.

SRCC or PLCC averaged over batches would be wrong, so predictions and targets are concatenated for
the epoch (torchmetrics' ``cat`` states gather them from every DDP process) and ``compute`` calls
``metrics.summary`` once on the whole epoch.
"""

from __future__ import annotations

import warnings

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from iqa_lab.evaluation.metrics import summary

HEADLINE = ("srcc", "plcc", "krcc", "rmse")


class IQAEpochMetrics(Metric):
    """``{prefix}srcc``, ``plcc``, ``krcc``, ``rmse`` over every (prediction, MOS) of the epoch."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, prefix: str = "", **kwargs):
        super().__init__(**kwargs)
        self.prefix = prefix
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.preds.append(preds.detach().float().flatten())
        self.target.append(target.detach().float().flatten())

    def compute(self) -> dict[str, torch.Tensor]:
        preds = dim_zero_cat(self.preds).cpu().double().numpy() if self.preds else []
        target = dim_zero_cat(self.target).cpu().double().numpy() if self.target else []
        with warnings.catch_warnings():
            # A constant-prediction epoch (e.g. the sanity check) is NaN by design, not news.
            warnings.simplefilter("ignore", RuntimeWarning)
            values = summary(preds, target)
        return {f"{self.prefix}{k}": torch.tensor(values[k], dtype=torch.float32) for k in HEADLINE}
