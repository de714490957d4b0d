"""Quality regression heads, chosen by ``type`` in a model's ``head`` config (``build_head``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from iqa_lab.errors import ConfigError
from iqa_lab.nn.kan import TaylorKANHead

# Activations a head may put between its two layers; None = none (the two layers compose into one
# linear map of rank ``hidden``, as StairIQA's regressor is written).
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


class MLPHead(nn.Module):
    """Pooled features → hidden layer → (activation) → one quality score per image, or
    ``outputs`` values per image (e.g. the logits of a rating distribution) when ``outputs > 1``.

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
        outputs: int = 1,
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
            nn.Linear(hidden, outputs),
        )
        # Start at the middle of the MOS scale: an output bias learnt from 0 at fine-tuning learning
        # rates takes hundreds of steps to reach the scores.
        nn.init.constant_(self.net[-1].bias, init_bias)

    def forward(self, features):
        out = self.net(features)
        return out.squeeze(-1) if out.shape[-1] == 1 else out


class HeadSet(nn.ModuleDict):
    """One head (``build_head``: an ``MLPHead`` unless ``type`` names another) per name on shared
    features (StairIQA's per-database regressors, MSLIQA's per-zoom-level heads):
    ``heads(features, names)`` is ``(N, len(names))``, every head when ``names`` is None. Only the
    named heads are computed, so the others get no gradient."""

    def __init__(self, in_features: int, names: Sequence[str], **head):
        super().__init__({name: build_head(in_features, head) for name in names})

    def forward(self, features: torch.Tensor, names: Sequence[str] | None = None) -> torch.Tensor:
        return torch.stack([self[name](features) for name in names or list(self)], dim=-1)


# Where each hidden layer's BatchNorm sits relative to its ReLU.
LAYER_ORDERS = ("relu_bn", "bn_relu")


class DenseBNHead(nn.Module):
    """Fused features → ``dense → BatchNorm → ReLU → dropout`` per width → linear score.

    ``order``: ``relu_bn`` is QualityNet's Eqs. 25–33 (a ReLU dense layer, then BatchNorm, then
    dropout); ``bn_relu`` the usual dense → BatchNorm → ReLU. ``dropouts`` are drop probabilities
    (the paper's Bernoulli keep p = 0.75, 0.75, 0.5 are drops of .25, .25, .5)."""

    def __init__(
        self,
        in_features: int,
        widths: list[int],
        dropouts: list[float],
        order: str = "relu_bn",
        init_bias: float = 0.5,
    ):
        super().__init__()
        if order not in LAYER_ORDERS:
            raise ConfigError(f"head order must be one of {LAYER_ORDERS}, got '{order}'")
        if len(widths) != len(dropouts):
            raise ConfigError(
                f"head widths {list(widths)} and dropouts {list(dropouts)} need one dropout per "
                f"width"
            )
        layers: list[nn.Module] = []
        for width, drop in zip(widths, dropouts):
            norm_act = [nn.ReLU(), nn.BatchNorm1d(width)]
            layers += [nn.Linear(in_features, width)]
            layers += norm_act if order == "relu_bn" else norm_act[::-1]
            layers += [nn.Dropout(drop)]
            in_features = width
        layers.append(nn.Linear(in_features, 1))
        self.net = nn.Sequential(*layers)
        nn.init.constant_(self.net[-1].bias, init_bias)

    def forward(self, features):
        if self.training and len(features) == 1:
            return self._with_running_statistics(features)
        return self.net(features).squeeze(-1)

    def _with_running_statistics(self, features):
        """A training batch of one image (an epoch's last) has no batch statistics (PyTorch's
        BatchNorm refuses it): it is normalised with the running statistics, left unchanged."""
        norms = [m for m in self.net if isinstance(m, nn.BatchNorm1d)]
        for norm in norms:
            norm.eval()
        try:
            return self.net(features).squeeze(-1)
        finally:
            for norm in norms:
                norm.train()


# What a head config's ``type`` may name (``conf/regressor/`` selects one for any model).
HEADS = {"mlp": MLPHead, "dense_bn": DenseBNHead, "taylorkan": TaylorKANHead}


def build_head(in_features: int, spec: Mapping, default: str = "mlp") -> nn.Module:
    """The head ``spec["type"]`` names (``default`` when it names none) with the rest of ``spec``
    as its arguments."""
    spec = dict(spec)
    kind = spec.pop("type", None) or default
    if kind not in HEADS:
        raise ConfigError(f"model.head.type must be one of {sorted(HEADS)}, got '{kind}'")
    try:
        return HEADS[kind](in_features, **spec)
    except TypeError as error:
        raise ConfigError(
            f"model.head (type {kind}): {error}; its arguments are those of "
            f"{HEADS[kind].__name__} (iqa_lab/nn/heads.py, iqa_lab/nn/kan.py)"
        ) from None
