"""``iqa-explain``: saliency maps of a model's predicted score (pytorch-grad-cam), overlays and a
contact sheet. The model that must find a damage is learned here: a tiny ``model=baseline``
(timm's ``test_resnet``, random init) trained for 40 steps by Lightning on 32 px pictures with
heavy noise in a random rectangle, labelled 1 - the noisy fraction; it is then asked about 64 px
pictures noisy in one half."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from pytorch_grad_cam.utils.image import show_cam_on_image

from iqa_lab.config_checks import config_problems
from iqa_lab.errors import ConfigError
from iqa_lab.explain import overlay_names
from iqa_lab.models.base import load_iqa_module
from iqa_lab.models.baseline import BaselineIQA
from iqa_lab.models.saliency import METHODS, saliency_maps
from iqa_lab.models.stairiqa import StairIQA
from tests.conftest import compose_config
from tests.planted import jpeg_bytes, plant, png_bytes
from tests.train_runs import bare_trainer, run_app

ROOT = Path(__file__).resolve().parents[1]
ADAM = {"_target_": "torch.optim.Adam", "lr": 3e-3}
RECIPE = {
    "databases": {
        "damage": {
            "eval_transform": {"crop_size": None, "resize": None, "resize_short_side": None},
            "mos_range": [1.0, 5.0],
            "lower_better": False,
            "synthetic_labels": True,
        }
    },
    "collate": "stack",
}


def smooth(rng: np.random.Generator, count: int, side: int) -> torch.Tensor:
    """``count`` smooth pictures in [0, 1]: random 8 x 8 colours, bicubically enlarged."""
    small = torch.tensor(rng.random((count, 3, 8, 8)), dtype=torch.float32)
    big = torch.nn.functional.interpolate(small, size=(side, side), mode="bicubic")
    return big.clamp(0, 1)


def noisy(images: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """``images`` with Gaussian noise (sigma 0.3) where ``mask`` is 1."""
    noise = torch.tensor(rng.normal(0, 0.3, images.shape), dtype=torch.float32)
    return (images + mask * noise).clamp(0, 1)


def damage_set(count: int, side: int = 32, seed: int = 0) -> list[dict]:
    """Pictures noisy in a random rectangle (none in one of five), MOS = 1 - noisy fraction."""
    rng = np.random.default_rng(seed)
    mask = torch.zeros(count, 1, side, side)
    for i in range(count):
        if rng.random() < 0.2:
            continue
        h, w = rng.integers(side // 4, side + 1, size=2)
        top, left = rng.integers(0, side - h + 1), rng.integers(0, side - w + 1)
        mask[i, :, top : top + h, left : left + w] = 1
    images = noisy(smooth(rng, count, side), mask, rng)
    mos = 1 - mask.mean(dim=(1, 2, 3))
    return [{"image": images[i], "mos": mos[i], "index": torch.tensor(i)} for i in range(count)]


def half_damaged(count: int = 4, side: int = 64, seed: int = 1) -> tuple[torch.Tensor, ...]:
    """(clean, noisy in the left half, noisy in the right half) versions of ``count`` pictures."""
    rng = np.random.default_rng(seed)
    clean = smooth(rng, count, side)
    left = torch.zeros(1, 1, side, side)
    left[..., : side // 2] = 1
    return clean, noisy(clean, left, rng), noisy(clean, left.flip(-1), rng)


def left_share(maps: np.ndarray) -> np.ndarray:
    """Each map's share of its mass in the left half of the picture."""
    half = maps.shape[-1] // 2
    return maps[..., :half].sum(axis=(1, 2)) / maps.sum(axis=(1, 2))


@pytest.fixture(scope="module")
def damage_model(tmp_path_factory) -> tuple[BaselineIQA, Path]:
    """The learned damage detector (see the module docstring) and its checkpoint, which carries
    a scoring recipe like a trained run's (native size, MOS scale 1-5)."""
    torch.manual_seed(0)
    model = BaselineIQA(
        backbone={"name": "test_resnet"}, head={"hidden": 32, "dropout": 0.0}, optimizer=ADAM
    )
    loader = torch.utils.data.DataLoader(damage_set(320), batch_size=8)
    trainer = bare_trainer(max_steps=40)
    trainer.fit(model, train_dataloaders=loader)
    model.scoring_recipe = RECIPE
    ckpt = tmp_path_factory.mktemp("damage") / "damage.ckpt"
    trainer.save_checkpoint(ckpt)
    return model.eval(), ckpt


def test_the_detector_learned_that_noise_lowers_the_score(damage_model):
    model, _ = damage_model
    clean, left, right = half_damaged()
    with torch.no_grad():
        scores = [model(images).numpy() for images in (clean, left, right)]
    assert (scores[0] - scores[1] > 0.2).all() and (scores[0] - scores[2] > 0.2).all()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_most_of_the_map_lies_on_the_damaged_half(damage_model, method):
    model, _ = damage_model
    _, left, right = half_damaged()
    maps, _ = saliency_maps(model, left, method, target="negated_score")
    assert (left_share(maps) > 0.7).all(), left_share(maps)
    maps, _ = saliency_maps(model, right, method, target="negated_score")
    assert (left_share(maps) < 0.3).all(), left_share(maps)
    # What raises the score is the clean half.
    maps, _ = saliency_maps(model, left, method, target="score")
    assert left_share(maps).mean() < 0.35, left_share(maps)


def test_map_has_the_image_shape_is_not_constant_and_changes_with_the_layer(damage_model):
    model, _ = damage_model
    rng = np.random.default_rng(2)
    mask = torch.zeros(1, 1, 48, 80)
    mask[..., 10:40, 5:30] = 1
    images = noisy(smooth(rng, 2, 80)[..., :48, :], mask, rng)  # not square: H 48, W 80
    assert model.explain_layer() == "backbone.model.layer4"
    maps, scores = saliency_maps(model, images, "gradcam")
    assert maps.shape == (2, 48, 80) and scores.shape == (2,)
    with torch.no_grad():
        np.testing.assert_allclose(scores, model(images).numpy(), atol=1e-5)
    assert maps.min() >= 0 and np.allclose(maps.max(axis=(1, 2)), 1, atol=1e-3)
    assert (maps.std(axis=(1, 2)) > 0.1).all()
    earlier, _ = saliency_maps(model, images, "gradcam", "backbone.model.layer2")
    assert earlier.shape == maps.shape
    assert np.abs(earlier - maps).mean() > 0.05


def test_any_model_gets_a_default_layer_stairiqa_its_fused_staircase():
    torch.manual_seed(0)
    model = StairIQA(
        backbone={"name": "test_efficientnet"},
        staircase={},
        head={"hidden": 16},
        heads=["a"],
        optimizer=ADAM,
    )
    assert model.explain_layer() == "staircase"
    images = smooth(np.random.default_rng(3), 2, 64)[..., :56]
    for method in sorted(METHODS):
        maps, _ = saliency_maps(model, images, method)
        assert maps.shape == (2, 64, 56) and (maps.std(axis=(1, 2)) > 0.05).all(), method
    stage, _ = saliency_maps(model, images, "gradcam", "backbone.model.blocks.2")
    assert np.abs(stage - maps).mean() > 0.05


def test_a_frozen_backbone_is_explained_like_the_same_weights_unfrozen():
    """A frozen prefix (``frozen_stages``; the fast recipe freezes the whole backbone) has no
    parameter that needs a gradient: the map must still be computed, and be the same."""
    _, left, _ = half_damaged(count=2)
    maps = {}
    for frozen in (0, 5):  # test_resnet: 4 stages, 5 = everything up to the pooled features
        torch.manual_seed(0)
        model = BaselineIQA(
            backbone={"name": "test_resnet", "frozen_stages": frozen},
            head={"hidden": 16},
            optimizer=ADAM,
        )
        maps[frozen], _ = saliency_maps(model, left)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert (maps[5].std(axis=(1, 2)) > 0.1).all()
    np.testing.assert_allclose(maps[5], maps[0], atol=1e-5)


def test_a_layer_that_does_not_exist_or_is_not_a_feature_map_is_refused(damage_model):
    model, _ = damage_model
    images = torch.rand(1, 3, 32, 32)
    with pytest.raises(ConfigError, match=r"target_layer=nope: .* default is backbone.model"):
        saliency_maps(model, images, layer="nope")
    with pytest.raises(ConfigError, match=r"target_layer=head.net.0: its output has shape"):
        saliency_maps(model, images, layer="head.net.0")
    with pytest.raises(ConfigError, match=r"method=cam: choose one of"):
        saliency_maps(model, images, method="cam")


def test_explain_config_composes_and_its_picture_options_are_checked(tmp_path, cache_dir):
    cfg = compose_config(
        "explain", ["overlay.image_weight=1.5", "contact_sheet.columns=0"], tmp_path, cache_dir
    )
    assert cfg.method == "gradcam" and cfg.target == "score" and cfg.target_layer is None
    assert cfg.output_dir == str(tmp_path / "overlays")
    assert config_problems(cfg) == [
        "overlay.image_weight=1.5 must be a number in [0, 1]",
        "contact_sheet.columns=0 must be a whole number >= 1",
    ]


def test_overlay_names_are_distinct_and_keep_subfolders(tmp_path):
    paths = [tmp_path / "a.png", tmp_path / "a.jpg", tmp_path / "sub" / "b.jpg"]
    assert overlay_names(paths, "gradcam") == [
        "a.gradcam.png",
        "a_2.gradcam.png",
        "sub__b.gradcam.png",
    ]


def test_cli_writes_overlays_and_a_contact_sheet_and_names_a_corrupt_file(damage_model, tmp_path):
    _, ckpt = damage_model
    clean, left, _ = half_damaged(count=3)

    def pixels(image: torch.Tensor) -> np.ndarray:
        return (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)

    folder = tmp_path / "photos"
    plant(folder / "sub", {"clean.jpg": jpeg_bytes(pixels(clean[2]))})
    plant(
        folder,
        {
            "clean.png": png_bytes(pixels(clean[0])),
            "left.png": png_bytes(pixels(left[1])),
            "broken.jpg": jpeg_bytes(pixels(clean[1]))[:300],  # cut short
        },
    )
    out = tmp_path / "out"
    done = run_app(
        "explain",
        [
            f"ckpt={ckpt}",
            f"inputs={folder}",
            "target=negated_score",
            f"output_dir={out}",
        ],
        tmp_path / "run",
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-3000:]
    assert "3 of 4 images explained" in done.stdout
    assert f"{folder / 'broken.jpg'}:" in done.stdout and "1 failed" in done.stdout
    table = pd.read_csv(out / "explain.csv").set_index("path")
    broken = table.loc[str(folder / "broken.jpg")]
    assert np.isnan(broken["score"]) and "Truncated File Read" in broken["error"]
    assert pd.isna(broken["overlay"])
    assert sorted(p.name for p in out.glob("*.png")) == [
        "clean.gradcam.png",
        "contact_sheet.png",
        "left.gradcam.png",
        "sub__clean.gradcam.png",
    ]
    # The overlay of left.png is its map over it (64 px enlarged 4x), the score written below.
    model = load_iqa_module(str(ckpt)).eval()
    image = torch.tensor(np.asarray(Image.open(folder / "left.png")), dtype=torch.float32)
    image = image.permute(2, 0, 1)[None] / 255
    maps, scores = saliency_maps(model, image, "gradcam", target="negated_score")
    row = table.loc[str(folder / "left.png")]
    assert row["score_01"] == pytest.approx(scores[0], abs=1e-5)
    assert row["score"] == pytest.approx(1 + 4 * scores[0], abs=1e-4)  # MOS scale 1-5
    assert row["overlay"] == str(out / "left.gradcam.png") and pd.isna(row["error"])
    picture = np.asarray(Image.open(row["overlay"]).convert("RGB"))
    assert picture.shape[1] == 256 and picture.shape[0] > 256  # the caption strip below
    expected = show_cam_on_image(image[0].permute(1, 2, 0).numpy(), maps[0], use_rgb=True)
    expected = expected.repeat(4, axis=0).repeat(4, axis=1)
    assert np.abs(picture[:256].astype(int) - expected).mean() < 1.0
    caption = picture[256:]
    assert (caption < 128).any() and (caption == 255).mean() > 0.5  # dark text on white
    assert left_share(maps) > 0.7
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.width > 3 * 256 and sheet.height > 256  # three tiles in one row, captions below
