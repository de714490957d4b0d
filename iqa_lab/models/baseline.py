"""``model=baseline``: backbone → global average pooling → MLP head."""

from __future__ import annotations

from collections.abc import Mapping

from iqa_lab.models.base import IQAModule
from iqa_lab.nn.backbones import Backbone
from iqa_lab.nn.heads import build_head


class BaselineIQA(IQAModule):
    """A backbone's pooled features through a head: ``head.type`` names it (``regressor=…``:
    ``nn.heads.HEADS``), else ``default_head`` (a subclass swaps it: KonCept512's dense-BatchNorm
    head)."""

    pretrained_modules = ("backbone",)
    default_head = "mlp"

    def __init__(self, backbone: Mapping, head: Mapping, **kwargs):
        super().__init__(**kwargs)
        self.backbone = Backbone(**backbone)
        self.head = build_head(self.backbone.num_features, head, self.default_head)

    def explain_layer(self) -> str:
        """The backbone's last stage."""
        return f"backbone.{self.backbone.last_stage_name()}"

    def forward(self, image, *, reference=None, mask=None, heads=None):
        return self.head(self.backbone(image, mask=mask))
