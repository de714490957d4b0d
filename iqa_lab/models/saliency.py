"""Saliency maps of a model's predicted score (``iqa-explain``), computed by pytorch-grad-cam.

The regression target is the predicted score itself (``IQAModule.score``, the normalised scale,
higher = better): ``target="score"`` shows the regions whose features raise it (Grad-CAM of the
score, as QualityNet (Aslam et al., Sci. Reports 2024) Fig. 14 shows); ``target="negated_score"``
the regions whose features lower it, which is where a distortion shows.

``METHODS``: ``gradcam`` (Selvaraju et al., ICCV 2017), ``gradcampp`` (Grad-CAM++, Chattopadhay
et al., WACV 2018: positive second-order weights, better for several regions) and ``layercam``
(Jiang et al., TIP 2021: element-wise weights, finer maps at earlier layers). The layer is any
submodule with ``(B, C, H, W)`` outputs; ``IQAModule.explain_layer`` names each model's default.
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM
from torch import nn

from iqa_lab.errors import ConfigError
from iqa_lab.models.base import IQAModule

METHODS = {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus, "layercam": LayerCAM}
TARGETS = {"score": 1.0, "negated_score": -1.0}


class ScoreOf(nn.Module):
    """``image → (B,)`` predicted scores of an ``IQAModule`` (its active head for a multi-head
    model), the module the saliency methods run."""

    def __init__(self, model: IQAModule):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # A frozen backbone prefix has no parameter that needs a gradient: without an input that
        # does, its feature maps would get none and the map could not be computed.
        if torch.is_grad_enabled() and not image.requires_grad:
            image = image.detach().requires_grad_(True)
        heads = self.model.heads_for({})
        scores = self.model.score(image, heads=heads)
        return scores[:, 0] if heads else scores


class ScoreTarget:
    """The quantity explained for one image: its predicted score, times ``sign``."""

    def __init__(self, sign: float):
        self.sign = sign

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return self.sign * output


def target_module(model: IQAModule, layer: str | None) -> tuple[str, nn.Module]:
    """``(name, module)`` of ``layer`` in ``model``; None = the model's default
    (``explain_layer``)."""
    name = layer or model.explain_layer()
    try:
        return name, model.get_submodule(name)
    except AttributeError:
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        raise ConfigError(
            f"target_layer={name}: {type(model).__name__} has no such submodule; its default is "
            f"{model.explain_layer()}, its last Conv2d layers are {convs[-3:]}"
        ) from None


def _layer_problem(hooks) -> str | None:
    """Why the hooked layer could not be explained, if it is the layer's fault."""
    if not hooks.activations:
        return "the score does not run this layer"
    shape = tuple(hooks.activations[0].shape)
    if len(shape) != 4:
        return f"its output has shape {shape}, not a feature map"
    if not hooks.gradients:
        return "the score gets no gradient through this layer"
    return None


def saliency_maps(
    model: IQAModule,
    images: torch.Tensor,
    method: str = "gradcam",
    layer: str | None = None,
    target: str = "score",
) -> tuple[np.ndarray, np.ndarray]:
    """``(maps, scores)`` of a ``(B, C, H, W)`` batch in [0, 1]: ``(B, H, W)`` maps in [0, 1]
    (each scaled to its own maximum; all zero where nothing raises the target) and the ``(B,)``
    predicted scores on the normalised scale."""
    if method not in METHODS:
        raise ConfigError(f"method={method}: choose one of {sorted(METHODS)}")
    if target not in TARGETS:
        raise ConfigError(f"target={target}: choose one of {sorted(TARGETS)}")
    if images.dim() != 4:
        raise ConfigError(
            f"saliency needs one view per image, (B, C, H, W); got shape {tuple(images.shape)} "
            f"(an eval transform with five crops?)"
        )
    name, module = target_module(model, layer)
    scorer = ScoreOf(model).eval()
    device = next(model.parameters()).device
    images = images.to(device)
    cam = METHODS[method](scorer, [module])
    # Not ``with cam:``: its exit swallows an IndexError raised inside.
    hooks = cam.activations_and_grads
    try:
        maps = cam(images, targets=[ScoreTarget(TARGETS[target])] * len(images))
        scores = cam.outputs.detach().float().cpu().numpy()
    except (AttributeError, TypeError, ValueError, IndexError) as err:
        problem = _layer_problem(hooks)
        if problem:
            raise ConfigError(
                f"target_layer={name}: {problem}; pick a layer with (B, C, H, W) outputs that the "
                f"score is computed through (default: {model.explain_layer()})"
            ) from err
        raise
    finally:
        hooks.release()
    return maps, scores
