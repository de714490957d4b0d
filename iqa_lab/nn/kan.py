"""TaylorKAN (seed abstract: Taylor series based Kolmogorov–Arnold networks for image sharpness
assessment): a KAN whose edge functions are truncated Taylor series.

A Kolmogorov–Arnold layer from ``n`` inputs to ``m`` outputs puts one learnable univariate
function on every edge and sums at the nodes: ``y_j = sum_i phi_ij(x_i)``. TaylorKAN's edge
function is a polynomial of degree ``order``: ``phi_ij(x) = sum_{k=0..order} c_ijk x^k``.

Choices the abstract leaves open, as KAN practice has them:

- inputs are squashed by ``tanh`` before the powers (``squash=True``), so ``x^k`` stays in
  [-1, 1] at any degree and depth; a Taylor series is a local expansion, around 0 here;
- the coefficients start as a linear layer (``c_ij1`` with PyTorch's ``nn.Linear`` scale
  ``U(-1/sqrt(n), 1/sqrt(n))``), the higher ones small (divided by ``k!``, as Taylor terms
  shrink), the constants ``c_ij0`` at 0: training starts near a linear map and bends it;
- the head (``TaylorKANHead``) is two layers, ``in -> hidden -> outputs``, the depth of the MLP
  head it replaces; there is no activation between them: the edge functions are the nonlinearity;
- a LayerNorm between the two layers keeps the hidden values in tanh's sensitive range: with
  thousands of inputs one Adam step moves a hidden node by up to fan-in x order x lr (about 16 for
  4,128 features at lr 1e-3), which without it saturated the second layer's tanh and froze the head
  at a constant output (measured on BIQ2021's cached lite0 statistics, experiment=biq2021_fast).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from iqa_lab.errors import ConfigError


class TaylorKANLayer(nn.Module):
    """``y_j = sum_i sum_k c_ijk t_i^k`` with ``t = tanh(x)`` (or ``x`` when ``squash=False``);
    ``coefficients`` has shape ``(out_features, in_features, order + 1)``."""

    def __init__(self, in_features: int, out_features: int, order: int = 3, squash: bool = True):
        super().__init__()
        if order < 1:
            raise ConfigError(f"TaylorKAN order must be >= 1 (degree of each edge), got {order}")
        self.in_features, self.out_features, self.order = in_features, out_features, order
        self.squash = squash
        scale = 1.0 / math.sqrt(in_features)
        coefficients = torch.zeros(out_features, in_features, order + 1)
        for k in range(1, order + 1):
            coefficients[..., k].uniform_(-scale, scale).div_(math.factorial(k))
        self.coefficients = nn.Parameter(coefficients)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.tanh(x) if self.squash else x
        powers = torch.stack([t**k for k in range(self.order + 1)], dim=-1)  # (B, in, order+1)
        return powers.flatten(1) @ self.coefficients.flatten(1).T

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"order={self.order}, squash={self.squash}"
        )


class TaylorKANHead(nn.Module):
    """Pooled features → TaylorKAN layer (``hidden`` nodes) → LayerNorm → dropout → TaylorKAN
    layer → one score per image (``outputs`` values when > 1): a drop-in for ``MLPHead``
    (``regressor=taylorkan``) with the same input options (``input_norm``,
    ``input_norm_momentum``, ``input_dropout``, ``init_bias``: the output layer's constant terms
    start summing to it)."""

    def __init__(
        self,
        in_features: int,
        hidden: int = 64,
        order: int = 3,
        dropout: float = 0.1,
        init_bias: float = 0.5,
        input_norm: bool = False,
        input_norm_momentum: float | None = 0.1,
        input_dropout: float = 0.0,
        outputs: int = 1,
        activation: str | None = None,
    ):
        super().__init__()
        if activation is not None:
            raise ConfigError(
                f"the TaylorKAN head has no activation (its edge polynomials are the "
                f"nonlinearity), got activation={activation!r}; set model.head.activation=null"
            )
        before: list[nn.Module] = []
        if input_norm:
            before.append(nn.BatchNorm1d(in_features, affine=False, momentum=input_norm_momentum))
        if input_dropout:
            before.append(nn.Dropout(input_dropout))
        self.net = nn.Sequential(
            *before,
            TaylorKANLayer(in_features, hidden, order),
            nn.LayerNorm(hidden),
            nn.Dropout(dropout),
            TaylorKANLayer(hidden, outputs, order),
        )
        with torch.no_grad():
            self.net[-1].coefficients[..., 0].fill_(init_bias / hidden)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.net(features)
        return out.squeeze(-1) if out.shape[-1] == 1 else out
