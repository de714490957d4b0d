"""The timm factory and the offline ImageNet weights."""

import re
import time

import numpy as np
import pytest
import skimage.data
import timm
import torch
import torch.nn.functional as F

from iqa_lab.errors import ConfigError
from iqa_lab.nn import backbones
from iqa_lab.nn.backbones import (
    SHIPPED_WEIGHTS,
    Backbone,
    BackboneWeightsUnavailable,
    convert_lukemelas_efficientnet,
    create_timm_model,
)
from iqa_lab.nn.pooling import masked_mean_std_pool

IMAGENET_CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _chelsea(size=224) -> torch.Tensor:
    image = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1)[None].float() / 255
    return F.interpolate(image, size=(size, size), mode="bilinear", antialias=True)


@pytest.mark.parametrize("name", sorted(SHIPPED_WEIGHTS))
def test_shipped_weights_classify_chelsea_as_a_cat(name):
    backbone_model = create_timm_model(name, pretrained=True).eval()
    mean = torch.tensor(backbone_model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(backbone_model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    assert mean.flatten().tolist() == [0.5] * 3 and std.flatten().tolist() == [0.5] * 3
    with torch.no_grad():
        probs = backbone_model((_chelsea() - mean) / std).softmax(-1)[0]
    assert int(probs.argmax()) in IMAGENET_CAT_CLASSES
    assert float(probs[sorted(IMAGENET_CAT_CLASSES)].sum()) > 0.5


def test_random_weights_do_not_know_cats():
    model = create_timm_model("tf_efficientnet_lite0", pretrained=False).eval()
    with torch.no_grad():
        probs = model((_chelsea() - 0.5) / 0.5).softmax(-1)[0]
    assert float(probs[sorted(IMAGENET_CAT_CLASSES)].sum()) < 0.1


def test_conversion_covers_every_key_strictly():
    shipped = SHIPPED_WEIGHTS["tf_efficientnet_lite0"]
    state = torch.load(shipped.path(), map_location="cpu", weights_only=True)
    converted = convert_lukemelas_efficientnet(state, shipped.stage_depths)
    model = timm.create_model("tf_efficientnet_lite0")
    assert set(converted) == set(model.state_dict())
    assert converted["blocks.0.0.conv_dw.weight"] is state["_blocks.0._depthwise_conv.weight"]
    assert converted["blocks.1.0.conv_pwl.weight"] is state["_blocks.1._project_conv.weight"]
    assert converted["bn2.weight"] is state["_bn1.weight"]


def test_checkpoint_file_loads_both_layouts(tmp_path):
    shipped = SHIPPED_WEIGHTS["tf_efficientnet_lite0"]
    reference = create_timm_model("tf_efficientnet_lite0", pretrained=True)
    timm_file = tmp_path / "timm.pth"
    torch.save({"state_dict": reference.state_dict()}, timm_file)
    for path in (timm_file, shipped.path()):
        model = create_timm_model("tf_efficientnet_lite0", checkpoint=str(path))
        assert torch.equal(model.conv_stem.weight, reference.conv_stem.weight)


def test_missing_checkpoint_names_the_alternatives(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrained=false"):
        create_timm_model("resnet18", checkpoint=str(tmp_path / "absent.pth"))


def test_unreachable_hub_fails_fast_with_alternatives(monkeypatch):
    monkeypatch.setattr(backbones, "_cached_hub_file", lambda name: None)
    monkeypatch.setattr(backbones, "_hub_reachable", lambda timeout=3.0: False)
    start = time.time()
    with pytest.raises(BackboneWeightsUnavailable) as err:
        create_timm_model("resnet18", pretrained=True)
    assert time.time() - start < 10
    message = str(err.value)
    assert "backbone.checkpoint=" in message and "backbone.pretrained=false" in message
    assert "tf_efficientnet_lite0" in message


def test_backbone_normalises_and_pools():
    backbone = Backbone("tf_efficientnet_lite0", pretrained=True)
    images = torch.rand(2, 3, 96, 96)
    manual = backbone.model((images - 0.5) / 0.5)
    assert torch.allclose(backbone(images), manual)
    assert backbone(images).shape == (2, backbone.num_features) == (2, 1280)


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "resnet18", "mobilenetv3_small_100"])
def test_features_only_follows_feature_info(name):
    backbone = Backbone(name, pretrained=False, features_only=True)
    features = backbone(torch.rand(1, 3, 128, 128))
    assert [f.shape[1] for f in features] == backbone.feature_info.channels()
    assert [128 // f.shape[-1] for f in features] == backbone.feature_info.reduction()


def test_features_only_keeps_pretrained_weights():
    pooled = Backbone("tf_efficientnet_lite0", pretrained=True)
    multi = Backbone("tf_efficientnet_lite0", pretrained=True, features_only=True)
    assert torch.equal(pooled.model.conv_stem.weight, multi.model.conv_stem.weight)
    assert np.isclose(
        float(multi.model.blocks[6][0].conv_pwl.weight.abs().sum()),
        float(pooled.model.blocks[6][0].conv_pwl.weight.abs().sum()),
    )


def test_mean_std_pool_equals_numpy_and_respects_the_mask():
    features = torch.rand(2, 3, 4, 6)
    pooled = masked_mean_std_pool(features, eps=0.0)
    flat = features.flatten(2).numpy()
    assert np.allclose(pooled[:, :3].numpy(), flat.mean(-1), atol=1e-6)
    assert np.allclose(pooled[:, 3:].numpy(), flat.std(-1), atol=1e-5)  # population std
    mask = torch.zeros(2, 8, 12)
    mask[:, :, :6] = 1  # the left half of the input is real: the left 3 columns of the map
    left = features[..., :3].flatten(2).numpy()
    masked = masked_mean_std_pool(features, mask, eps=0.0)
    assert np.allclose(masked[:, :3].numpy(), left.mean(-1), atol=1e-6)
    assert np.allclose(masked[:, 3:].numpy(), left.std(-1), atol=1e-5)


@pytest.mark.parametrize(
    "name,widths",
    [
        ("tf_efficientnet_lite0", [16, 24, 40, 80, 112, 192, 320, 1280]),
        ("resnet18", [64, 128, 256, 512]),
    ],
)
def test_stage_mean_std_pools_every_stage(name, widths):
    backbone = Backbone(name, pretrained=False, pooling="stage_mean_std").eval()
    assert backbone.stage_widths() == widths
    assert backbone.num_features == 2 * sum(widths)
    images = torch.rand(2, 3, 96, 96)
    pooled = backbone(images)
    assert pooled.shape == (2, 2 * sum(widths))
    # the last block of statistics is the last map's: its means are what avg pooling gives
    average = Backbone(name, pretrained=False).eval()
    average.load_state_dict(backbone.state_dict())
    last = pooled[:, -2 * widths[-1] : -widths[-1]]
    assert torch.allclose(last, average(images), atol=1e-5)
    # a real-pixel mask that covers everything changes nothing
    ones = torch.ones(2, 96, 96)
    assert torch.allclose(backbone(images, mask=ones), pooled, atol=1e-5)


def test_stage_mean_std_of_a_frozen_backbone_is_its_prefix_output():
    frozen = Backbone(
        "tf_efficientnet_lite0", pretrained=False, frozen_stages=8, pooling="stage_mean_std"
    ).eval()
    images = torch.rand(2, 3, 64, 64)
    assert frozen.forward_prefix(images).shape == (2, frozen.num_features) == (2, 4128)
    assert torch.allclose(frozen(images), frozen.forward_prefix(images))
    frozen.reads_prefix_features = True
    assert torch.allclose(frozen(frozen.forward_prefix(images)), frozen.forward_prefix(images))


@pytest.mark.parametrize(
    "kwargs,words",
    [
        ({"pooling": "max"}, "choose one of"),
        ({"pooling": "stage_mean_std", "frozen_stages": 3}, "freeze all (8) or none"),
        ({"pooling": "stage_mean_std", "features_only": True}, "backbone.pooling=avg"),
    ],
)
def test_bad_pooling_is_refused(kwargs, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        Backbone("tf_efficientnet_lite0", pretrained=False, **kwargs)


@pytest.mark.parametrize("pooling", ["avg", "stage_mean_std"])
def test_building_a_backbone_keeps_the_pretrained_batchnorm_statistics(pooling):
    """Nothing the constructor runs (the stage-width probe) may move a running statistic."""
    reference = create_timm_model("tf_efficientnet_lite0", pretrained=True)
    built = Backbone("tf_efficientnet_lite0", pretrained=True, pooling=pooling)
    assert built.training  # the probe restores the mode it found
    expected = {k: v for k, v in reference.state_dict().items() if "running" in k}
    actual = built.model.state_dict()
    assert expected
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key
