"""MLMS-IQA (multi-level and multi-scale deep IQA): ``model=mlms_nr`` and ``model=mlms_fr``.

``MLMSNR`` (§2, Figs. 1–4, Eqs. 1–8): the first stages of a pretrained CNN (the paper: "the first
four layers" of ResNet50, read as the stem and layer1–3, timm feature level 3, stride 16;
offline default: the same level of tf_efficientnet_lite0 with its shipped ImageNet weights, a
ResNet50-like stand-in; ``model.backbone.name=resnet50`` for parity where its weights can be had)
→ 1×1 conv projection (Eq. 1) → ``nn.multiscale.MultiScaleQuality``: parallel spatial pooling
scales with positional and scale encodings, one Swin-Transformer stage per scale, one regressor
per scale, learned score fusion (the readings of the garbled equations are in that module).

``MLMSFR`` (§3, Figs. 5–6, Eqs. 9–15): ONE timm ViT applied to the reference and the distorted
image (shared weights: both go through the same module in one batch), patch-token maps of blocks
3, 5, 7, 9, 11 → per-level differences ``reference − distorted`` (Eq. 9) → attention aggregator
per level → concatenation → fusion convolutions → dual-branch head (per-patch score and weight;
image score = weighted mean). ``quality_map`` exposes the per-patch ``score × weight``. No ViT
weights ship offline: the default is random initialisation (``model.vit.pretrained=false``);
``pretrained=true`` takes timm's hub weights where the hub (or its cache) can be reached. The
paper's FR model also names a multi-scale IQA module between aggregation and head without saying
how it connects; it is not part of ``mlms_fr`` here.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from iqa_lab.errors import ConfigError
from iqa_lab.models.base import IQAModule
from iqa_lab.nn.backbones import Backbone
from iqa_lab.nn.feature_fusion import AttentionAggregator, DualBranchHead, FusionModule
from iqa_lab.nn.multiscale import MultiScaleQuality
from iqa_lab.nn.vit_layers import ViTLayers


class MLMSNR(IQAModule):
    """No-reference MLMS-IQA: CNN stages → projection → multi-scale Swin branches → fused score."""

    pretrained_modules = ("backbone",)

    def __init__(self, backbone: Mapping, feature_level: int, multiscale: Mapping, **kwargs):
        super().__init__(**kwargs)
        self.backbone = Backbone(**backbone, features_only=True, out_indices=[feature_level])
        channels = self.backbone.feature_info.channels()[-1]
        self.projection = nn.Conv2d(channels, multiscale["dim"], 1)
        self.multiscale = MultiScaleQuality(**multiscale)

    def explain_layer(self) -> str:
        return "projection"

    def scale_scores(self, image, *, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, U)`` per-scale scores and the ``(B,)`` fused score."""
        features = self.projection(self.backbone(image)[-1])
        return self.multiscale(features, mask)

    def forward(self, image, *, reference=None, mask=None, heads=None) -> torch.Tensor:
        return self.scale_scores(image, mask=mask)[1]


class MLMSFR(IQAModule):
    """Full-reference MLMS-IQA: one shared ViT, multi-level differences, aggregation, fusion,
    dual-branch head."""

    needs = frozenset({"reference"})
    pretrained_modules = ("vit",)

    def __init__(
        self,
        vit: Mapping,
        aggregator: Mapping,
        fusion_channels: int,
        head: Mapping,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vit = ViTLayers(**vit)
        levels = len(self.vit.layers)
        self.aggregators = nn.ModuleList(
            AttentionAggregator(self.vit.dim, **aggregator) for _ in range(levels)
        )
        self.fusion = FusionModule(levels * self.vit.dim, fusion_channels)
        self.head = DualBranchHead(fusion_channels, **head)

    def explain_layer(self) -> str:
        return "fusion"

    def patch_scores(self, image, reference) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-patch ``(B, h, w)`` scores and weights."""
        if reference is None:
            raise ConfigError(
                "model=mlms_fr is full-reference: every batch needs its reference image "
                "(a database with references, e.g. data=synthetic)"
            )
        if reference.shape != image.shape:
            raise ConfigError(
                f"model=mlms_fr: reference {tuple(reference.shape)} and image "
                f"{tuple(image.shape)} differ in shape; they must share one geometry"
            )
        # One pass of the one ViT over both images: the weights are shared by construction.
        both = self.vit(torch.cat([reference, image]))
        diffs = [ref - dis for ref, dis in (level.chunk(2) for level in both)]
        aggregated = [agg(diff) for agg, diff in zip(self.aggregators, diffs)]
        return self.head(self.fusion(torch.cat(aggregated, dim=1)))

    def forward(self, image, *, reference=None, mask=None, heads=None) -> torch.Tensor:
        scores, weights = self.patch_scores(image, reference)
        return DualBranchHead.pool(scores, weights, mask)

    def quality_map(self, image, *, reference=None, mask=None) -> torch.Tensor:
        """``(B, h, w)`` per-patch ``score × weight``, scaled by ``h·w / Σ weight`` so that the
        map's mean is the image score (low = worse)."""
        scores, weights = self.patch_scores(image, reference)
        cells = weights.shape[-2] * weights.shape[-1]
        return scores * weights * cells / weights.sum(dim=(1, 2), keepdim=True).clamp_min(1e-6)
