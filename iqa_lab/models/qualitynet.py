"""``model=qualitynet``: QualityNet (Aslam et al., Sci. Reports 2024): two pretrained streams,
spatial and channel attention per stream, concatenation, a dense regression head.

Per stream (``streams``: any timm pair; the paper's are ResNet50-like and EfficientNet-B7-like):

- ``attention=paper`` (Eqs. 12–23): backbone → global average pooling → reshape to
  ``(B, C, 1, 1)`` → spatial attention → channel attention → flatten. On a 1×1 map the spatial
  gate is one scalar per image: it cannot select regions.
- ``attention=attention_before_pool`` (ours, not in the paper): the same blocks on the backbone's
  last feature map, then global average pooling, so the spatial gate weights positions.

Fusion (Eq. 24) concatenates the streams; the head (Eqs. 25–34) is ``nn.heads.DenseBNHead``.
A stream set to ``null`` is left out, as is an attention block set to ``null`` (Fig. 15's
ablation). Every stream is a declared pretrained part (backbone learning rate, offline reload).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from iqa_lab.errors import ConfigError
from iqa_lab.models.base import IQAModule
from iqa_lab.nn.attention import SpatialChannelAttention
from iqa_lab.nn.backbones import Backbone
from iqa_lab.nn.heads import DenseBNHead

ATTENTION_MODES = ("paper", "attention_before_pool")


class QualityNet(IQAModule):
    def __init__(
        self,
        streams: Mapping[str, Mapping | None],
        head: Mapping,
        attention: str = "paper",
        spatial_attention: Mapping | None = None,
        channel_attention: Mapping | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if attention not in ATTENTION_MODES:
            raise ConfigError(f"model.attention={attention!r}: choose one of {ATTENTION_MODES}")
        names = [name for name, settings in streams.items() if settings is not None]
        if not names:
            raise ConfigError(
                "model.streams: every stream is null; QualityNet needs at least one backbone"
            )
        self.attention = attention
        self.stream_names = names
        # Instance-level: an ablation may drop a stream.
        self.pretrained_modules = tuple(names)
        self.attention_blocks = nn.ModuleDict()
        for name in names:
            backbone = Backbone(**streams[name])
            setattr(self, name, backbone)
            channels = backbone.num_features if attention == "paper" else backbone.map_channels
            self.attention_blocks[name] = SpatialChannelAttention(
                channels, spatial_attention, channel_attention
            )
        fused = sum(getattr(self, name).num_features for name in names)
        self.head = DenseBNHead(fused, **head)

    def stream_features(
        self, name: str, image: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, C)``: one stream's attended, pooled features."""
        backbone, attend = getattr(self, name), self.attention_blocks[name]
        if self.attention == "paper":
            pooled = backbone(image, mask=mask)[:, :, None, None]  # Eqs. 13–14
            return attend(pooled).flatten(1)  # Eqs. 15–17
        return backbone.pool_map(attend(backbone.feature_map(image), mask), mask)

    def forward(self, image, *, reference=None, mask=None, heads=None):
        fused = torch.cat([self.stream_features(n, image, mask) for n in self.stream_names], dim=1)
        return self.head(fused)
