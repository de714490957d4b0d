"""A timm Vision Transformer that returns the patch-token maps of chosen blocks (MLMS-IQA's
feature extraction module, §3, Fig. 5; the same read-out as MANIQA / AHIQ)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from iqa_lab.errors import ConfigError
from iqa_lab.nn.backbones import create_timm_model


class ViTLayers(nn.Module):
    """Images in [0, 1] → the ``(B, dim, h, w)`` patch-token maps after each block of ``layers``
    (timm's 0-based block indices; class and register tokens dropped).

    Weights as ``Backbone`` gets them (``checkpoint``, timm's hub when ``pretrained``); none ship
    offline for ViTs, so offline it is ``pretrained=false``: random initialisation. Any input
    size that is a multiple of the patch size works (``dynamic_img_size``: the position
    embedding is interpolated). Blocks after the last of ``layers`` and the classifier are
    removed."""

    def __init__(
        self,
        name: str,
        layers: Sequence[int],
        pretrained: bool = False,
        checkpoint: str | None = None,
    ):
        super().__init__()
        self.name = name
        self.layers = sorted({int(i) for i in layers})
        model = create_timm_model(
            name, pretrained=pretrained, checkpoint=checkpoint, dynamic_img_size=True
        )
        blocks = len(getattr(model, "blocks", ()))
        if not blocks or not hasattr(model, "forward_intermediates"):
            raise ConfigError(f"model.vit.name={name} is not a timm Vision Transformer (vit_*)")
        if not self.layers or self.layers[0] < 0 or self.layers[-1] >= blocks:
            raise ConfigError(
                f"model.vit.layers={list(layers)}: '{name}' has blocks 0..{blocks - 1}; the paper "
                f"reads layers 3, 5, 7, 9, 11 of a 12-block ViT"
            )
        mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        model.prune_intermediate_layers(self.layers, prune_norm=True, prune_head=True)
        self.model = model
        self.dim = model.embed_dim
        self.patch_size = model.patch_embed.patch_size[0]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        size = images.shape[-2:]
        if any(s % self.patch_size for s in size):
            raise ConfigError(
                f"model.vit: image size {tuple(size)} is not a multiple of the ViT's patch size "
                f"{self.patch_size}; resize or crop to one (data.transforms)"
            )
        return self.model.forward_intermediates(
            (images - self.mean) / self.std,
            indices=self.layers,
            intermediates_only=True,
            output_fmt="NCHW",
        )
