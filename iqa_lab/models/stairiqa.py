"""``model=stairiqa``: the staircase network over any timm backbone with one quality regressor per
database (StairIQA, Sun et al. 2023, §III-A/B, Fig. 2).

backbone stages (``features_only``) → ``nn.staircase.Staircase`` → global average pooling (over real
pixels only in a padded batch) → one head per database (FC 128 → FC 1). ``forward`` computes only
the named ``heads``; ``IQAModule.predict_batch`` asks for the heads of the batch's databases.
``heads: null`` in the config means one head per training database of the run's DataModule
(``data=mixed``), or a single head named after the database.

Note on level 0: timm's ResNet features start at the stem's activation (stride 2), the official
code at the max-pool output (stride 4); path 1 therefore has one more stride-2 bridge here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from iqa_lab.errors import ConfigError
from iqa_lab.models.base import IQAModule
from iqa_lab.nn.backbones import Backbone
from iqa_lab.nn.heads import HeadSet
from iqa_lab.nn.pooling import masked_mean_pool
from iqa_lab.nn.staircase import Staircase


class StairIQA(IQAModule):
    pretrained_modules = ("backbone",)
    database_heads = "heads"

    def __init__(
        self,
        backbone: Mapping,
        staircase: Mapping,
        head: Mapping,
        heads: Sequence[str] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not heads:
            raise ConfigError(
                "model=stairiqa needs model.heads (database names); the train entry "
                "point fills them from the DataModule when the config says null"
            )
        self.backbone = Backbone(**{**backbone, "features_only": True})
        info = self.backbone.feature_info
        self.staircase = Staircase(info.channels(), info.reduction(), **staircase)
        self.heads = HeadSet(self.staircase.out_channels, heads, **head)
        self.head_names = list(heads)

    def explain_layer(self) -> str:
        """The staircase's output: the last stage's map with every path fused in, which the
        heads pool."""
        return "staircase"

    def forward(
        self,
        image: torch.Tensor,
        *,
        reference=None,
        mask: torch.Tensor | None = None,
        heads: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """(N, len(heads)) scores, every head when ``heads`` is None."""
        pooled = masked_mean_pool(self.staircase(self.backbone(image)), mask)
        return self.heads(pooled, heads or self.head_names)
