"""Crop / resize policies, the batching of their outputs, and the model's mean over crops."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch
from albumentations.pytorch import ToTensorV2

from iqa_lab.data.collate import IQACollate, pad_images
from iqa_lab.data.transforms import FiveCrop, build_transform, five_crop_boxes
from tests.planted import padded_test_batch
from tests.test_images import MeanColour


def ramp(height: int, width: int) -> np.ndarray:
    """Every pixel distinct enough to locate a crop: (row, column, row + column) mod 256."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([y % 256, x % 256, (y * 7 + x * 3) % 256], -1).astype(np.uint8)


def as_array(tensor: torch.Tensor) -> np.ndarray:
    return np.rint(tensor.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def test_full_image_is_the_image_in_0_1():
    image = ramp(37, 53)
    for stage in ("train", "test"):
        out = build_transform(stage)(image=image)["image"]
        assert out.dtype == torch.float32 and out.shape == (3, 37, 53)
        assert torch.equal(out, torch.from_numpy(image).permute(2, 0, 1).float() / 255)


def test_native_random_crop_is_a_window_of_the_image_and_eval_takes_the_centre():
    image = ramp(100, 140)
    crop = as_array(build_transform("train", crop_size=64)(image=image)["image"])
    assert crop.shape == (64, 64, 3)
    top, left = int(crop[0, 0, 0]), int(crop[0, 0, 1])  # the ramp encodes the position
    np.testing.assert_array_equal(crop, image[top : top + 64, left : left + 64])
    centre = as_array(build_transform("test", crop_size=64)(image=image)["image"])
    np.testing.assert_array_equal(centre, image[18:82, 38:102])


def test_fixed_resize_and_short_side():
    image = ramp(120, 200)
    assert build_transform("test", resize=[96, 64])(image=image)["image"].shape == (3, 96, 64)
    assert build_transform("test", resize_short_side=60)(image=image)["image"].shape == (3, 60, 100)
    with pytest.raises(ValueError, match="resize_short_side or resize, not both"):
        build_transform("test", resize=[96, 64], resize_short_side=60)


def test_stairiqa_train_scales_the_short_side_to_380_then_crops_320():
    transform = build_transform("train", resize_short_side=380, crop_size=320, hflip=True)
    assert [type(op) for op in transform.transforms][:3] == [
        A.SmallestMaxSize,
        A.RandomCrop,
        A.HorizontalFlip,
    ]
    assert transform(image=ramp(400, 600))["image"].shape == (3, 320, 320)


def test_five_crop_is_the_four_corners_and_the_centre_exactly():
    image = ramp(100, 131)
    transform = build_transform("test", crop_size=64, crop="five")
    crops = transform(image=image)["image"]
    assert isinstance(transform, FiveCrop) and crops.shape == (5, 3, 64, 64)
    windows = [
        image[:64, :64],
        image[:64, -64:],
        image[-64:, :64],
        image[-64:, -64:],
        image[18:82, 33:97],
    ]
    for crop, window in zip(crops, windows):
        assert torch.equal(crop, torch.from_numpy(window).permute(2, 0, 1).float() / 255)
    assert five_crop_boxes(100, 131, 64) == [(0, 0), (0, 67), (36, 0), (36, 67), (18, 33)]


def test_stairiqa_eval_five_crops_come_from_the_rescaled_image():
    image = ramp(400, 600)
    crops = build_transform("test", resize_short_side=380, crop_size=320, crop="five")(image=image)[
        "image"
    ]
    scaled = A.SmallestMaxSize(max_size=380, area_for_downscale="image")(image=image)["image"]
    assert scaled.shape == (380, 570, 3) and crops.shape == (5, 3, 320, 320)
    assert torch.equal(crops[3], torch.from_numpy(scaled[60:, 250:]).permute(2, 0, 1).float() / 255)


def test_quality_preserving_by_default_and_label_changing_ops_only_when_asked():
    allowed = {
        A.SmallestMaxSize,
        A.Resize,
        A.RandomCrop,
        A.CenterCrop,
        A.HorizontalFlip,
        A.VerticalFlip,
        A.PadIfNeeded,
        A.ToFloat,
        ToTensorV2,
    }
    for kwargs in (
        {},
        {"crop_size": 32, "hflip": True, "vflip": True},
        {"resize": [32, 32], "hflip": True},
        {"resize_short_side": 40, "crop_size": 32},
    ):
        ops = {type(op) for op in build_transform("train", **kwargs).transforms}
        assert ops <= allowed and {A.ToFloat, ToTensorV2} <= ops
    asked = build_transform(
        "train", crop_size=32, augment={"GaussianBlur": {"p": 1.0}, "ImageCompression": {"p": 0.5}}
    )
    assert {A.GaussianBlur, A.ImageCompression} <= {type(op) for op in asked.transforms}
    evaluation = build_transform("test", crop_size=32, hflip=True, augment={"GaussianBlur": {}})
    assert {type(op) for op in evaluation.transforms} == {A.CenterCrop, A.ToFloat, ToTensorV2}
    with pytest.raises(ValueError, match="'Blurry' is not an albumentations transform"):
        build_transform("train", augment={"Blurry": {}})


def test_hflip_flips_half_the_time_at_train_only():
    image = ramp(8, 8)
    outputs = [
        as_array(build_transform("train", hflip=True)(image=image)["image"]) for _ in range(40)
    ]
    flipped = sum(np.array_equal(out, image[:, ::-1]) for out in outputs)
    assert 5 <= flipped <= 35 and flipped + sum(np.array_equal(o, image) for o in outputs) == 40


def item(image: torch.Tensor, index: int) -> dict:
    return {"image": image, "mos": torch.tensor(0.1 * index), "index": torch.tensor(index)}


def test_pad_collate_pads_to_the_largest_with_a_mask():
    a, b = torch.ones(3, 4, 6), 2 * torch.ones(3, 5, 3)
    batch = IQACollate("pad")([item(a, 0), item(b, 1)])
    assert batch["image"].shape == (2, 3, 5, 6) and batch["mask"].shape == (2, 5, 6)
    assert batch["mask"][0].sum() == 24 and batch["mask"][1].sum() == 15
    assert (
        torch.equal(batch["image"][0][:, :4, :6], a) and batch["image"][0][:, 4:].abs().sum() == 0
    )
    assert torch.equal(batch["image"][1][:, :5, :3], b) and batch["image"][1][:, :, 3:].sum() == 0
    assert torch.equal(batch["mask"][1][:, :3], torch.ones(5, 3, dtype=torch.bool))
    assert torch.equal(batch["index"], torch.tensor([0, 1])) and batch["bad_inputs"] == []
    images, mask = pad_images([a, a])
    assert mask.all() and torch.equal(images, torch.stack([a, a]))


def test_stack_collate_refuses_different_sizes_and_stacks_five_crops():
    with pytest.raises(ValueError, match="different sizes in one batch.*data.collate=pad"):
        IQACollate("stack")([item(torch.ones(3, 4, 6), 0), item(torch.ones(3, 5, 3), 1)])
    five = IQACollate("stack")([item(torch.rand(5, 3, 8, 8), i) for i in range(3)])
    assert five["image"].shape == (3, 5, 3, 8, 8)


def test_collate_leaves_out_bad_items_and_passes_them_on():
    bad = {"bad": {"image": "x.jpg", "reason": "decode: broken", "split": "test"}}
    batch = IQACollate("stack")([item(torch.ones(3, 2, 2), 0), bad])
    assert batch["image"].shape == (1, 3, 2, 2) and batch["bad_inputs"] == [bad["bad"]]
    empty = IQACollate("stack")([bad])
    assert (
        len(empty["mos"]) == 0 and len(empty["image"]) == 0 and empty["index"].dtype == torch.long
    )


def test_model_scores_five_crops_as_their_mean_and_skips_empty_batches():
    model = MeanColour()
    crops = torch.rand(2, 5, 3, 8, 8)
    expected = torch.stack(
        [torch.stack([model(c[None])[0] for c in crops[b]]).mean() for b in range(2)]
    )
    torch.testing.assert_close(model.score(crops), expected)
    loss, pred = model.model_step({"image": crops, "mos": torch.tensor([0.2, 0.4])}, "val")
    torch.testing.assert_close(pred, expected)
    assert loss is not None
    loss, pred = model.model_step({"image": torch.empty(0), "mos": torch.empty(0)}, "train")
    assert loss is None and len(pred) == 0


def test_presets_compose_into_the_data_config(make_cfg):
    cfg = make_cfg(overrides=["+transforms=stairiqa"])
    assert dict(cfg.data.transforms.train) == {
        "resize_short_side": 380,
        "resize": None,
        "crop_size": 320,
        "crop": "random",
        "hflip": False,  # the paper trains without flips
        "vflip": False,
        "augment": None,
    }
    assert cfg.data.transforms.eval.crop == "five"
    for preset in ("full", "random_crop", "resize"):
        cfg = make_cfg(overrides=[f"+transforms={preset}"])
        for stage in ("train", "eval"):
            build_transform("test" if stage == "eval" else "train", **cfg.data.transforms[stage])


def test_native_resolution_loader_pads_images_of_different_sizes(tmp_path):
    sizes = [(30, 40), (44, 20), (30, 40), (16, 16), (50, 24), (20, 60), (36, 36), (28, 30)]
    batch, shapes = padded_test_batch(tmp_path, sizes, batch_size=4)
    height, width = max(h for h, _ in shapes), max(w for _, w in shapes)
    assert batch["image"].shape == (len(shapes), 3, height, width)
    assert [int(m.sum()) for m in batch["mask"]] == [h * w for h, w in shapes]
