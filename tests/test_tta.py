"""Test-time augmentation (``iqa_lab.data.tta``): the recipes' views, and the wrapper that
``IQAModule.score`` calls (identity, chunking, padded batches, StairIQA's five crops)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iqa_lab.data.transforms import build_transform
from iqa_lab.data.tta import TestTimeAugmentation, build_tta, grid_corners
from iqa_lab.errors import ConfigError
from iqa_lab.models.baseline import BaselineIQA
from tests.conftest import compose_config

ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return BaselineIQA(
        backbone={"name": "test_resnet"}, head={"hidden": 16, "dropout": 0.0}, optimizer=ADAM
    ).eval()


def tta_config(name: str, tmp_path):
    return compose_config("eval", [f"tta={name}"], tmp_path, tmp_path).tta


def test_the_msliqa_recipe_has_exactly_108_views_of_224_and_384(tmp_path):
    tta = build_tta(tta_config("msliqa108", tmp_path))
    groups = tta.views(torch.rand(3, 384, 512))  # a TID2013 / KADID-10k image
    assert {tuple(g.shape): None for g in groups}.keys() == {
        (54, 3, 224, 224): None,
        (54, 3, 384, 384): None,
    }.keys()
    assert tta.view_count(torch.rand(3, 384, 512)) == 108
    # 9 patches x 3 scales x (patch, transposed patch) per size, whatever the image size
    assert tta.view_count(torch.rand(3, 100, 90)) == 108


def test_patches_are_uniform_and_transposed():
    assert grid_corners(512, 224, 3) == [0, 144, 288]
    assert grid_corners(200, 224, 3) == [0, 0, 0]  # padded up to the patch
    image = torch.arange(2 * 8 * 10, dtype=torch.float32).view(2, 8, 10)
    tta = TestTimeAugmentation(
        "t", "patch_grid", {"sizes": [4], "scales": [1.0], "grid": 3, "transpose": True}
    )
    (views,) = tta.views(image)
    assert views.shape == (18, 2, 4, 4)
    assert torch.equal(views[0], image[:, 0:4, 0:4])
    assert torch.equal(views[4], image[:, 2:6, 3:7])  # the centre patch
    assert torch.equal(views[8], image[:, 4:8, 6:10])
    assert torch.equal(views[9:], views[:9].transpose(-1, -2))


def test_a_single_identity_view_gives_the_plain_prediction(model):
    images = torch.rand(3, 3, 40, 48)
    with torch.no_grad():
        plain = model.score(images)
        model.tta = TestTimeAugmentation("none", "none")
        try:
            wrapped = model.score(images)
        finally:
            model.tta = None
    torch.testing.assert_close(wrapped, plain)


def test_views_are_averaged_in_bounded_chunks(model):
    images = torch.rand(3, 3, 40, 48)
    calls = []

    def score(views, **kw):
        calls.append(len(views))
        return model.score_views(views, **kw)

    with torch.no_grad():
        expected = (model.score(images) + model.score(images.flip(-1))) / 2
        chunked = TestTimeAugmentation("flip", "flip", chunk_size=4)(score, images)
    assert calls == [4, 2]  # 6 views, at most 4 per forward pass
    torch.testing.assert_close(chunked, expected)


def test_a_padded_batch_is_augmented_on_each_images_real_pixels(model):
    small, large = torch.rand(3, 30, 40), torch.rand(3, 40, 48)
    batch = torch.zeros(2, 3, 40, 48)
    batch[0, :, :30, :40], batch[1] = small, large
    mask = torch.zeros(2, 40, 48, dtype=torch.bool)
    mask[0, :30, :40], mask[1] = True, True
    tta = TestTimeAugmentation("flip", "flip")
    with torch.no_grad():
        got = tta(model.score_views, batch, mask=mask)
        alone = [tta(model.score_views, image[None]) for image in (small, large)]
    torch.testing.assert_close(got, torch.cat(alone))


def test_five_crop_recipe_is_stairiqas_five_crop_transform(model, tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    crops = build_transform("test", crop_size=32, crop="five")(image=array)["image"]
    full = build_transform("test")(image=array)["image"]
    config = tta_config("five_crop", tmp_path)
    config.options.size = 32
    tta = build_tta(config)
    (views,) = tta.views(full)
    torch.testing.assert_close(views, crops)
    with torch.no_grad():
        torch.testing.assert_close(tta(model.score_views, full[None]), model.score(crops[None]))


def test_an_option_the_recipe_lacks_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"recipe 'flip' has no option \['sizes'\]"):
        TestTimeAugmentation("flip", "flip", {"sizes": [84]})
    with pytest.raises(ConfigError, match="recipe 'zoom' is not one of"):
        TestTimeAugmentation("zoom", "zoom")
