"""Quality regression heads."""

from __future__ import annotations

from torch import nn

from iqa_lab.errors import ConfigError

# Activations a head may put between its two layers; None = none (the two layers compose into one
# linear map of rank ``hidden``, as StairIQA's regressor is written).
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


class MLPHead(nn.Module):
    """Pooled features → hidden layer → (activation) → one quality score per image."""

    def __init__(
        self,
        in_features: int,
        hidden: int = 256,
        dropout: float = 0.1,
        init_bias: float = 0.5,
        activation: str | None = "gelu",
    ):
        super().__init__()
        if activation is not None and activation not in ACTIVATIONS:
            raise ConfigError(
                f"head activation must be one of {sorted(ACTIVATIONS)} or null (none), "
                f"got '{activation}'"
            )
        between = [ACTIVATIONS[activation]()] if activation else []
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), *between, nn.Dropout(dropout), nn.Linear(hidden, 1)
        )
        # Start at the middle of the MOS scale: an output bias learnt from 0 at fine-tuning learning
        # rates takes hundreds of steps to reach the scores.
        nn.init.constant_(self.net[-1].bias, init_bias)

    def forward(self, features):
        return self.net(features).squeeze(-1)
