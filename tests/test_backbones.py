"""The timm factory and the offline ImageNet weights."""

import time

import numpy as np
import pytest
import skimage.data
import timm
import torch
import torch.nn.functional as F

from iqa_lab.nn import backbones
from iqa_lab.nn.backbones import (
    SHIPPED_WEIGHTS,
    Backbone,
    BackboneWeightsUnavailable,
    convert_lukemelas_efficientnet,
    create_timm_model,
)

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
