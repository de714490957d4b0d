"""``model=unified``: one transformer for full-reference and no-reference IQA, trained jointly
(after Zeng & Kwong, "Learning Transformer Features for Image Quality Assessment", 2021: a CNN
backbone and a transformer encoder, compatible with FR and NR modes, with a joint training scheme
by which NR performance gains).

The abstract fixes the parts, not their wiring; our choices:

- CNN backbone: the frozen prefix of a pretrained CNN (``backbone.frozen_stages=k``; default the
  shipped ImageNet ``tf_efficientnet_lite0``, stages 1–5, stride 16) gives a ``(C, h, w)`` map of
  the distorted image, and in FR mode of the reference through the same weights (one pass over
  both). The backbone's later stages are unused and frozen with it; the feature cache stores the
  prefix's maps where no reference is needed (NR-only databases).
- Tokens: ``P(f_d)``, a 1×1 projection of the distorted image's map to ``dim``; in FR mode plus
  ``Q(f_d − f_r)``, a 1×1 projection of the feature difference (zero-initialised, so the FR
  path starts as the NR one and learns what the reference adds). A convolutional position
  encoding, then a learned mode token (one for NR, one for FR) in front of the ``h·w`` tokens.
- ONE transformer encoder (timm ViT blocks) and ONE MLP head for both modes; the head reads the
  mode token's output. Only ``Q`` and the two mode tokens are mode-specific.
- Joint training (``joint=true``): on a database whose records all have a reference image, every
  training batch is scored in both modes; the loss is the evaluation mode's loss plus
  ``joint_weight`` times the other mode's (``IQAModule.auxiliary_losses``, logged as
  ``train/fr_loss`` or ``train/nr_loss``). On a database without references only NR trains.
- Evaluation (validation, test, scoring) in ``eval_mode``: ``nr`` by default; ``fr`` needs
  references (the DataModule refuses a database without them, by name).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from iqa_lab.errors import ConfigError
from iqa_lab.models.base import IQAModule
from iqa_lab.nn.backbones import Backbone
from iqa_lab.nn.heads import MLPHead
from iqa_lab.nn.token_maps import ConvPositionEncoding, TransformerEncoder, map_to_tokens

MODES = ("nr", "fr")


def has_references(datamodule) -> bool:
    """Whether every record of a set-up DataModule names a reference image."""
    records = getattr(datamodule, "records", None)
    if records is None or "reference" not in records:
        return False
    return bool(len(records)) and bool(records["reference"].notna().all())


class UnifiedIQA(IQAModule):
    """Shared CNN prefix + shared transformer encoder + shared head, scored with (FR) or without
    (NR) the reference (module docstring: the choices)."""

    pretrained_modules = ("backbone",)

    def __init__(
        self,
        backbone: Mapping,
        dim: int,
        encoder: Mapping,
        head: Mapping,
        eval_mode: str = "nr",
        joint: bool = True,
        joint_weight: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if eval_mode not in MODES:
            raise ConfigError(f"model.eval_mode={eval_mode!r}: choose one of {MODES}")
        self.eval_mode = eval_mode
        self.joint = bool(joint)
        self.joint_weight = float(joint_weight)
        self.backbone = Backbone(**backbone)
        # Only the frozen prefix's map is read; the later stages are unused, so frozen too.
        self.backbone.requires_grad_(False)
        channels = self.backbone.prefix_channels
        self.projection = nn.Conv2d(channels, dim, 1)
        self.difference = nn.Conv2d(channels, dim, 1)
        nn.init.zeros_(self.difference.weight)
        nn.init.zeros_(self.difference.bias)
        self.position = ConvPositionEncoding(dim)
        self.mode_tokens = nn.ParameterDict(
            {mode: nn.Parameter(torch.randn(1, 1, dim) * 0.02) for mode in MODES}
        )
        self.encoder = TransformerEncoder(dim, **encoder)
        self.head = MLPHead(dim, **head)
        self._image_map: torch.Tensor | None = None

    @property
    def needs(self) -> frozenset[str]:
        """``reference`` when evaluating in FR mode, or training jointly on a database with
        references (known once the trainer's DataModule is set up); nothing otherwise."""
        if self.eval_mode == "fr":
            return frozenset({"reference"})
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        if self.joint and has_references(datamodule):
            return frozenset({"reference"})
        return frozenset()

    def explain_layer(self) -> str:
        return "projection"

    def score_mode(
        self,
        mode: str,
        image,
        reference: torch.Tensor | None = None,
        image_map: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(B,)`` scores in ``mode`` (``nr`` or ``fr``); ``image_map`` is the distorted image's
        prefix map when already computed."""
        if mode == "fr" and reference is None:
            raise ConfigError(
                "model=unified in FR mode scores with the reference image; this batch has none "
                "(model.eval_mode=fr needs a database with references, e.g. data=synthetic)"
            )
        if image_map is None:
            image_map = self.backbone.prefix_map(image)
        if self.training:  # the other mode of this step reuses it (auxiliary_losses)
            self._image_map = image_map
        x = self.projection(image_map)
        if mode == "fr":
            reference_map = self.backbone.prefix_map(reference)
            x = x + self.difference(image_map - reference_map)
        tokens = map_to_tokens(self.position(x))
        token = self.mode_tokens[mode].expand(len(tokens), -1, -1)
        encoded = self.encoder(torch.cat([token, tokens], dim=1))
        return self.head(encoded[:, 0])

    def forward(self, image, *, reference=None, mask=None, heads=None) -> torch.Tensor:
        if mask is not None:
            raise ConfigError(
                "model=unified scores batches of one image size; data.collate=pad is not "
                "supported: set data.transforms crop_size or resize"
            )
        return self.score_mode(self.eval_mode, image, reference)

    def auxiliary_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """Joint training: the other mode's weighted loss on this batch, when it has references."""
        image_map, self._image_map = self._image_map, None
        reference = batch.get("reference")
        if not self.joint or reference is None:
            return {}
        other = "nr" if self.eval_mode == "fr" else "fr"
        scores = self.score_mode(other, batch["image"], reference, image_map=image_map)
        self._image_map = None
        loss = self.loss_fn(scores.float(), batch["mos"].float())
        return {f"{other}_loss": self.joint_weight * loss}
