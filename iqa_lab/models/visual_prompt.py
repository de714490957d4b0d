"""``model=visual_prompt``: parameter-efficient adaptation of a frozen model by a learnable
pixel-space prompt (seed abstract: visual prompts for NR-IQA on a frozen MLLM, mPLUG-Owl2, under
600K trainable parameters; here any frozen iqa_lab backbone).

image ``[0, 1]`` + prompt (``nn.prompt.PixelPrompt``) → frozen backbone (every parameter frozen,
BatchNorm in evaluation mode: its running statistics never move) → pooled features → head.
Only the prompt and the head train; gradients reach the prompt through the frozen backbone, so no
feature cache can stand in for it (``backbone.frozen_stages`` must stay 0). The prompt is added to
the pixels before the backbone's own normalisation (the seed abstract adds it to the image).

The abstract's frozen model scores from a text answer: a frozen backbone has no quality output,
so a small head on its pooled features is trained with the prompt (both counted in the trainable
parameters, which are logged at construction and as ``trainable_params`` in the run's
hyper-parameters).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from iqa_lab.errors import ConfigError
from iqa_lab.models.baseline import BaselineIQA
from iqa_lab.nn.prompt import PixelPrompt

log = logging.getLogger(__name__)


class VisualPromptIQA(BaselineIQA):
    def __init__(self, backbone: Mapping, head: Mapping, prompt: Mapping, **kwargs):
        if int(backbone.get("frozen_stages", 0)):
            raise ConfigError(
                "model=visual_prompt freezes the whole backbone itself and needs gradients "
                "through it to the pixels: set model.backbone.frozen_stages=0 (no feature cache)"
            )
        super().__init__(backbone, head, **kwargs)
        self.prompt = PixelPrompt(**prompt)
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.trainable_params = sum(p.numel() for p in self.parameters() if p.requires_grad)
        log.info(
            "visual prompt: %d trainable parameters (prompt %d + head %d); backbone %d frozen",
            self.trainable_params,
            self.prompt.expected_parameters(),
            self.trainable_params - self.prompt.expected_parameters(),
            sum(p.numel() for p in self.backbone.parameters()),
        )

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen BatchNorm statistics, no dropout in the frozen model
        return self

    def param_groups(self) -> list[dict]:
        """Only the prompt and the head, at ``head_lr_multiplier`` times the learning rate."""
        trainable = [p for p in self.parameters() if p.requires_grad]
        return [
            {
                "params": trainable,
                "lr": self.hparams.optimizer["lr"] * self.hparams.head_lr_multiplier,
            }
        ]

    def on_fit_start(self) -> None:
        if self.logger is not None:
            self.logger.log_hyperparams({"trainable_params": self.trainable_params})

    def forward(self, image, *, reference=None, mask=None, heads=None):
        return self.head(self.backbone(self.prompt(image), mask=mask))
