"""Quality regression heads."""

from __future__ import annotations

from torch import nn


class MLPHead(nn.Module):
    """Pooled features → hidden layer → one quality score per image."""

    def __init__(
        self, in_features: int, hidden: int = 256, dropout: float = 0.1, init_bias: float = 0.5
    ):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )
        # Start at the middle of the MOS scale: an output bias learnt from 0 at fine-tuning learning
        # rates takes hundreds of steps to reach the scores.
        nn.init.constant_(self.net[-1].bias, init_bias)

    def forward(self, features):
        return self.net(features).squeeze(-1)
