"""Epoch-level metrics for the LightningModules: torchmetrics accumulation (whole epoch, synced
across processes) over the same pure definitions as ``evaluation.metrics``.

SRCC or PLCC averaged over batches would be wrong, so predictions and targets are concatenated for
the epoch (torchmetrics' ``cat`` states gather them from every DDP process) and ``compute`` calls
``metrics.summary`` once on the whole epoch.
"""

from __future__ import annotations

import warnings

import numpy as np
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

    @staticmethod
    def _gathered(state) -> np.ndarray:
        # A list of batches in one process; one tensor once synchronised across DDP processes.
        if isinstance(state, list) and not state:
            return np.empty(0)
        return dim_zero_cat(state).cpu().double().numpy()

    def compute(self) -> dict[str, torch.Tensor]:
        preds, target = self._gathered(self.preds), self._gathered(self.target)
        with warnings.catch_warnings():
            # A constant-prediction epoch (e.g. the sanity check) is NaN by design, not news.
            warnings.simplefilter("ignore", RuntimeWarning)
            values = summary(preds, target)
        return {f"{self.prefix}{k}": torch.tensor(values[k], dtype=torch.float32) for k in HEADLINE}
