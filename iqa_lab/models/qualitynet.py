"""``model=qualitynet``: QualityNet (Aslam et al., Sci. Reports 2024): two pretrained streams,
spatial and channel attention per stream, concatenation, a dense regression head.

Per stream (``streams``: any timm pair; the paper's are ResNet50-like and EfficientNet-B7-like):

- ``attention=paper`` (Eqs. 12–23): backbone → global average pooling → reshape to
  ``(B, C, 1, 1)`` → spatial attention → channel attention → flatten. On a 1×1 map the spatial
  gate is one scalar per image: it cannot select regions.
- ``attention=attention_before_pool`` (ours, not in the paper): the same blocks on the backbone's
  last feature map, then global average pooling, so the spatial gate weights positions.

Fusion (Eq. 24) concatenates the streams; the head (Eqs. 25–34) is ``nn.heads.DenseBNHead``.
``use_streams`` names the streams used (Fig. 15's ablation drops one); an attention block set
to ``null`` is left out. Every stream used is a declared pretrained part (backbone learning rate,
offline reload).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
        streams: Mapping[str, Mapping],
        head: Mapping,
        use_streams: Sequence[str] | None = None,
        attention: str = "paper",
        spatial_attention: Mapping | None = None,
        channel_attention: Mapping | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if attention not in ATTENTION_MODES:
            raise ConfigError(f"model.attention={attention!r}: choose one of {ATTENTION_MODES}")
        names = list(streams) if use_streams is None else list(use_streams)
        unknown = [name for name in names if name not in streams]
        if unknown or not names:
            raise ConfigError(
                f"model.use_streams={names}: name one or more of model.streams {list(streams)}"
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
