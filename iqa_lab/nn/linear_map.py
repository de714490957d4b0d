"""A least-squares linear map of a model's outputs onto MOS, fitted after training (for losses
that ignore the outputs' scale and offset, e.g. Norm-in-Norm)."""

from __future__ import annotations

import torch
from torch import nn


class LinearOutputMap(nn.Module):
    """``a · x + b`` with ``(a, b)`` stored as buffers (so in every checkpoint); the identity until
    ``fit`` is called."""

    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("shift", torch.zeros(()))

    @torch.no_grad()
    def fit(self, outputs: torch.Tensor, target: torch.Tensor) -> bool:
        """Least squares of ``target`` on ``[outputs, 1]``; False (map unchanged) when the
        outputs are fewer than two or constant."""
        outputs, target = outputs.double().flatten(), target.double().flatten()
        if len(outputs) < 2 or outputs.std() == 0:
            return False
        x = outputs - outputs.mean()
        scale = (x * (target - target.mean())).sum() / (x * x).sum()
        self.scale.fill_(float(scale))
        self.shift.fill_(float(target.mean() - scale * outputs.mean()))
        return True

    def forward(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs * self.scale + self.shift
