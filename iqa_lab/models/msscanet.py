"""``model=msscanet``: MS-SCANet, the Multi-Scale Spatial Channel Attention Network
(Mithila & Farias, ICASSP 2025), no-reference.

The abstract names a dual-branch multi-scale transformer, tailored spatial and channel attention,
cross-branch attention and two consistency losses; the paper processes the image as 16×16 and
32×32 patches in two branches with window self-attention and trains on
``L1 + L_CB + L_AP``. Our reconstruction, sized for a CPU:

- Patch embedding: the frozen prefix of a pretrained CNN (``backbone.frozen_stages=k``; default
  the shipped ImageNet ``tf_efficientnet_lite0``, stages 1–5, stride 16, 112 channels), so the
  feature cache can store it (``callbacks.feature_cache``). The paper embeds pixels with a
  trainable patch projection; a pretrained prefix is our choice (no ImageNet transformer weights
  ship offline). The backbone's later stages are unused and frozen with it.
- Two branches on that map: the fine one on the map itself (the paper's 16-px patches), the
  coarse one on the map average-pooled by ``coarse_pool`` (2: the 32-px patches). Each branch:
  1×1 projection to ``dim``, a convolutional position encoding, ``depth`` ViT blocks
  (``nn.token_maps.TransformerEncoder``), then spatial and channel attention gates
  (``nn.attention.SpatialChannelAttention``, QualityNet's gates) on its token map. Self-attention
  is global within each branch: our maps (≤ 24×24 tokens) are one of the paper's windows.
- Cross-branch attention: the fine tokens attend to the coarse ones and the coarse tokens to the
  fine ones (``nn.token_maps.CrossAttention``, both from the branch outputs), residual.
- Each branch's tokens are averaged, the two vectors concatenated, an MLP head scores them.
- Consistency losses (``losses.cross_branch_consistency_loss``,
  ``losses.adaptive_pooling_consistency_loss``): between the pooled vectors of the two branches
  after cross-attention, and between the fine branch's map adaptive-pooled to the coarse grid and
  the coarse map (both before cross-attention), weighted by ``consistency`` and added to the
  training loss (``IQAModule.auxiliary_losses``). The paper's weights are 1 and 1 with an L1 loss.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from iqa_lab.errors import ConfigError
from iqa_lab.losses import adaptive_pooling_consistency_loss, cross_branch_consistency_loss
from iqa_lab.models.base import IQAModule
from iqa_lab.nn.attention import SpatialChannelAttention
from iqa_lab.nn.backbones import Backbone
from iqa_lab.nn.heads import MLPHead
from iqa_lab.nn.token_maps import (
    ConvPositionEncoding,
    CrossAttention,
    TransformerEncoder,
    map_to_tokens,
    tokens_to_map,
)

CONSISTENCY_TERMS = ("cross_branch", "adaptive_pooling")


class ScaleBranch(nn.Module):
    """One scale: feature map → projection → position encoding → transformer blocks → spatial and
    channel attention; returns the ``(B, dim, h, w)`` attended token map."""

    def __init__(
        self,
        in_channels: int,
        dim: int,
        encoder: Mapping,
        spatial_attention: Mapping | None,
        channel_attention: Mapping | None,
    ):
        super().__init__()
        self.projection = nn.Conv2d(in_channels, dim, 1)
        self.position = ConvPositionEncoding(dim)
        self.encoder = TransformerEncoder(dim, **encoder)
        self.attention = SpatialChannelAttention(dim, spatial_attention, channel_attention)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.position(self.projection(features))
        height, width = x.shape[-2:]
        tokens = self.encoder(map_to_tokens(x))
        return self.attention(tokens_to_map(tokens, height, width))


class MSSCANet(IQAModule):
    """Dual-branch multi-scale transformer with spatial / channel attention, cross-branch
    attention and branch-consistency losses (module docstring: the choices)."""

    pretrained_modules = ("backbone",)

    def __init__(
        self,
        backbone: Mapping,
        dim: int,
        encoder: Mapping,
        coarse_pool: int,
        spatial_attention: Mapping | None,
        channel_attention: Mapping | None,
        cross_attention: Mapping | None,
        consistency: Mapping[str, float],
        head: Mapping,
        **kwargs,
    ):
        super().__init__(**kwargs)
        unknown = sorted(set(consistency) - set(CONSISTENCY_TERMS))
        if unknown:
            raise ConfigError(
                f"model.consistency: unknown terms {unknown}; give weights of {CONSISTENCY_TERMS}"
            )
        if int(coarse_pool) < 2:
            raise ConfigError(f"model.coarse_pool={coarse_pool}: the coarse scale needs 2 or more")
        self.backbone = Backbone(**backbone)
        # Only the frozen prefix's map is read; the later stages are unused, so frozen too.
        self.backbone.requires_grad_(False)
        channels = self.backbone.prefix_channels
        branch = {
            "in_channels": channels,
            "dim": dim,
            "encoder": encoder,
            "spatial_attention": spatial_attention,
            "channel_attention": channel_attention,
        }
        self.coarse_pool = int(coarse_pool)
        self.fine = ScaleBranch(**branch)
        self.coarse = ScaleBranch(**branch)
        self.cross = None
        if cross_attention is not None:
            self.cross = nn.ModuleDict(
                {
                    "fine": CrossAttention(dim, **cross_attention),
                    "coarse": CrossAttention(dim, **cross_attention),
                }
            )
        self.consistency = {name: float(consistency.get(name, 0.0)) for name in CONSISTENCY_TERMS}
        self.head = MLPHead(2 * dim, **head)
        self._branch_outputs: tuple[torch.Tensor, ...] | None = None

    def explain_layer(self) -> str:
        return "fine.projection"

    def branch_maps(self, image) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``(B, dim, H, W)`` fine and ``(B, dim, ⌈H/p⌉, ⌈W/p⌉)`` coarse attended maps."""
        features = self.backbone.prefix_map(image)
        coarse = F.avg_pool2d(features, self.coarse_pool, ceil_mode=True)
        return self.fine(features), self.coarse(coarse)

    def pooled(self, fine: torch.Tensor, coarse: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each branch's ``(B, dim)`` mean token after cross-branch attention."""
        fine_tokens, coarse_tokens = map_to_tokens(fine), map_to_tokens(coarse)
        if self.cross is not None:
            fine_tokens, coarse_tokens = (
                self.cross["fine"](fine_tokens, coarse_tokens),
                self.cross["coarse"](coarse_tokens, fine_tokens),
            )
        return fine_tokens.mean(dim=1), coarse_tokens.mean(dim=1)

    def forward(self, image, *, reference=None, mask=None, heads=None) -> torch.Tensor:
        if mask is not None:
            raise ConfigError(
                "model=msscanet scores batches of one image size; data.collate=pad is not "
                "supported: set data.transforms crop_size or resize"
            )
        fine, coarse = self.branch_maps(image)
        fine_vector, coarse_vector = self.pooled(fine, coarse)
        if self.training:  # read by auxiliary_losses right after this step's forward
            self._branch_outputs = (fine, coarse, fine_vector, coarse_vector)
        return self.head(torch.cat([fine_vector, coarse_vector], dim=1))

    def auxiliary_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """The weighted Cross-Branch and Adaptive Pooling consistency terms of this step."""
        if self._branch_outputs is None:
            return {}
        fine, coarse, fine_vector, coarse_vector = self._branch_outputs
        self._branch_outputs = None
        terms = {}
        if self.consistency["cross_branch"]:
            value = cross_branch_consistency_loss(fine_vector, coarse_vector)
            terms["cross_branch_consistency"] = self.consistency["cross_branch"] * value
        if self.consistency["adaptive_pooling"]:
            value = adaptive_pooling_consistency_loss(fine, coarse)
            terms["adaptive_pooling_consistency"] = self.consistency["adaptive_pooling"] * value
        return terms
