"""How big a model is: its parameters and the FLOPs of one forward pass at a given input size
(StairIQA Table IV's "Para. (M)" and "GFlops" columns).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode``: a multiply-add is two FLOPs,
and only matrix products and convolutions count (normalisation, activations and pooling do not).
Papers that report "FLOPs" from ``thop``/``ptflops`` report multiply-accumulates (MACs), half of
these FLOPs; ``measure`` gives both.
"""

from __future__ import annotations

from collections.abc import Sequence

import hydra
import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from iqa_lab.nn.backbones import no_pretrained_weights


def count_parameters(model: nn.Module) -> int:
    """Every parameter of ``model``, trainable or not."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_size: Sequence[int], channels: int = 3) -> int:
    """FLOPs of one forward pass of one image of ``input_size`` (height, width), in eval mode."""
    height, width = input_size
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, channels, height, width))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def build_without_weights(model_cfg: DictConfig, heads: Sequence[str] | None = None) -> nn.Module:
    """The model of ``model_cfg`` with random weights (no hub, no checkpoint is read); ``heads``
    fills a multi-head model's ``heads: null``."""
    extra = {"heads": list(heads)} if "heads" in model_cfg and model_cfg.heads is None else {}
    with no_pretrained_weights():
        return hydra.utils.instantiate(model_cfg, **extra)


def measure(model: nn.Module, input_size: Sequence[int]) -> dict:
    """``params`` and ``flops`` (and ``macs`` = flops / 2) of ``model`` at ``input_size``."""
    flops = count_flops(model, input_size)
    return {
        "params": count_parameters(model),
        "flops": flops,
        "macs": flops / 2,
        "input_size": list(input_size),
    }
