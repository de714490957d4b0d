"""Quality regression heads."""

from __future__ import annotations

from torch import nn

from iqa_lab.errors import ConfigError

# Activations a head may put between its two layers; None = none (the two layers compose into one
# linear map of rank ``hidden``, as StairIQA's regressor is written).
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


class MLPHead(nn.Module):
    """Pooled features → hidden layer → (activation) → one quality score per image.

    ``input_norm`` standardises each input feature with batch statistics (a BatchNorm without
    affine parameters; running statistics at evaluation): multi-level pooled features mix scales
    that differ by orders of magnitude. ``input_norm_momentum=None`` makes those running statistics
    the average over every training batch seen (exact for a frozen backbone, whose features never
    change); a float is BatchNorm's exponential momentum (for features that still move).
    ``input_dropout`` drops input features while training.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int = 256,
        dropout: float = 0.1,
        init_bias: float = 0.5,
        activation: str | None = "gelu",
        input_norm: bool = False,
        input_norm_momentum: float | None = 0.1,
        input_dropout: float = 0.0,
    ):
        super().__init__()
        if activation is not None and activation not in ACTIVATIONS:
            raise ConfigError(
                f"head activation must be one of {sorted(ACTIVATIONS)} or null (none), "
                f"got '{activation}'"
            )
        between = [ACTIVATIONS[activation]()] if activation else []
        before = []
        if input_norm:
            before.append(nn.BatchNorm1d(in_features, affine=False, momentum=input_norm_momentum))
        if input_dropout:
            before.append(nn.Dropout(input_dropout))
        self.net = nn.Sequential(
            *before,
            nn.Linear(in_features, hidden),
            *between,
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )
        # Start at the middle of the MOS scale: an output bias learnt from 0 at fine-tuning learning
        # rates takes hundreds of steps to reach the scores.
        nn.init.constant_(self.net[-1].bias, init_bias)

    def forward(self, features):
        return self.net(features).squeeze(-1)
