"""Related work II (seed abstracts), this branch's parts: JNDMix (a NAMM JND profile and noise
under it, inside the data pipeline), the TaylorKAN head (swappable for any model's MLP head),
pixel-space visual prompts on a frozen backbone; each trained through the training entry point."""

from __future__ import annotations

import math
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException

from iqa_lab.data import jnd
from iqa_lab.data.transforms import build_transform
from iqa_lab.errors import ConfigError
from iqa_lab.nn.heads import MLPHead, build_head
from iqa_lab.nn.kan import TaylorKANHead, TaylorKANLayer
from iqa_lab.nn.prompt import PixelPrompt
from iqa_lab.train import train
from iqa_lab.training.feature_cache import transform_fingerprint
from tests.train_runs import bare_trainer

QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null", "logger=none"]
TINY_BACKBONE = ["model.backbone.name=mobilenetv3_small_050", "model.backbone.pretrained=false"]


# --- JNDMix ------------------------------------------------------------------------------------


def test_luminance_adaptation_is_chou_and_li_by_hand():
    # 17 (1 - sqrt(bg / 127)) + 3 up to 127, then 3/128 (bg - 127) + 3
    bg = np.array([0.0, 127.0 / 4, 127.0, 191.0, 255.0])
    expected = [20.0, 17 * 0.5 + 3, 3.0, 3 + 3 * 64 / 128, 6.0]
    np.testing.assert_allclose(jnd.luminance_adaptation(bg), expected, rtol=1e-6)


def test_flat_image_profile_is_its_luminance_threshold():
    for value, threshold in [(0, 20.0), (127, 3.0), (255, 6.0)]:
        profile = jnd.jnd_profile(np.full((6, 7, 3), value, np.uint8))
        assert profile.shape == (6, 7)
        np.testing.assert_allclose(profile, threshold, rtol=1e-6)  # no texture: JND = LA


def test_background_and_gradient_of_a_step_by_hand():
    # Rows 0-4 at 0, rows 5-9 at 160: at row 4 (just above the step), column 4 (away from the
    # sides), the background operator's rows +1 (weights 1,2,2,2,1) and +2 (1,1,1,1,1) see 160:
    # 13 * 160 / 32 = 65; operator G1 (horizontal edge) gives (1+3+8+3+1) * 160 / 16 = 160 in
    # absolute value.
    lum = np.zeros((10, 10), np.float32)
    lum[5:] = 160
    assert jnd.background_luminance(lum)[4, 4] == pytest.approx(13 * 160 / 32)
    assert jnd.background_luminance(lum)[6, 4] == pytest.approx((32 - 5) * 160 / 32)
    assert jnd.max_gradient(lum)[4, 4] == pytest.approx(160.0)
    assert jnd.max_gradient(lum)[0, 4] == pytest.approx(0.0)  # two rows away: flat neighbourhood


def test_namm_combines_luminance_and_texture_masking():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    lum = jnd.luma(image)
    la = jnd.luminance_adaptation(jnd.background_luminance(lum))
    tm = 0.117 * jnd.max_gradient(lum) * jnd.edge_weight(lum)
    expected = la + tm - 0.3 * np.minimum(la, tm)
    np.testing.assert_allclose(jnd.jnd_profile(image), expected, rtol=1e-6)
    assert (jnd.jnd_profile(image) > la).mean() > 0.5  # texture raises the threshold


@pytest.mark.parametrize("noise", ["sign", "uniform"])
def test_jndmix_noise_stays_within_the_jnd(noise):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    mix = jnd.JNDMix(strength=0.8, noise=noise, p=1.0)
    mix.set_random_seed(3)
    out = mix(image=image)["image"]
    change = np.abs(out.astype(np.float32) - image)
    bound = 0.8 * jnd.jnd_profile(image)[..., None]
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert (change <= bound + 0.5).all()  # rounding to grey levels adds at most half a level
    assert change.mean() > 1.0  # and it does add noise
    if noise == "sign":  # at the bound except where clipped at 0 or 255
        free = (image.astype(np.float32) - bound >= 0) & (image + bound <= 255)
        np.testing.assert_allclose(change[free], np.rint(image + bound)[free] - image[free], atol=1)
    mix.set_random_seed(3)
    assert np.array_equal(mix(image=image)["image"], out)  # seeded: cached views repeat


def test_jndmix_in_the_training_pipeline_only_and_in_the_cache_key():
    image = np.random.default_rng(2).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    augment = {"JNDMix": {"strength": 1.0, "noise": "sign", "p": 1.0}}
    train_tf = build_transform("train", resize=[32, 32], augment=augment)
    plain = build_transform("train", resize=[32, 32])
    evaluate = build_transform("test", resize=[32, 32], augment=augment)
    train_tf.set_random_seed(0)
    noisy, clean = train_tf(image=image)["image"], plain(image=image)["image"]
    assert noisy.shape == clean.shape == (3, 32, 32)
    assert 0 < (noisy - clean).abs().max() <= 20.5 / 255  # at most the darkest JND (20 levels)
    assert torch.equal(evaluate(image=image)["image"], clean)  # evaluation is never augmented
    # the feature cache keys views by the transform: JNDMix and its arguments are in it
    assert "JNDMix" in transform_fingerprint(train_tf)
    other = build_transform("train", resize=[32, 32], augment={"JNDMix": {"strength": 0.5}})
    assert transform_fingerprint(other) != transform_fingerprint(train_tf)
    with pytest.raises(ConfigError, match="JNDMix noise"):
        jnd.JNDMix(noise="gaussian")


def test_jndmix_batches_keep_their_labels(make_cfg):
    cfg = make_cfg("train", ["augment=jndmix", "data.transforms.train.augment.JNDMix.p=1.0"])
    assert dict(cfg.data.transforms.train.augment) == {
        "JNDMix": {"strength": 1.0, "noise": "sign", "p": 1.0}
    }
    plain_cfg = make_cfg("train", [])
    batches = []
    for c in (cfg, plain_cfg):
        datamodule = hydra.utils.instantiate(c.data, protocol=c.protocol)
        datamodule.prepare_data()
        datamodule.setup("fit")
        batches.append(next(iter(datamodule.train_dataloader())))
    noisy, plain = batches
    assert torch.equal(noisy["index"], plain["index"])
    assert torch.equal(noisy["mos"], plain["mos"])  # labels untouched
    assert not torch.equal(noisy["image"], plain["image"])


# --- TaylorKAN ---------------------------------------------------------------------------------


def test_taylorkan_layer_equals_numpy():
    torch.manual_seed(0)
    layer = TaylorKANLayer(5, 3, order=4)
    with torch.no_grad():
        layer.coefficients.normal_()
    x = torch.randn(7, 5)
    c = layer.coefficients.detach().numpy().astype(np.float64)  # (out, in, order + 1)
    t = np.tanh(x.numpy().astype(np.float64))
    expected = np.zeros((7, 3))
    for b in range(7):
        for j in range(3):
            expected[b, j] = sum(c[j, i, k] * t[b, i] ** k for i in range(5) for k in range(5))
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    assert sum(p.numel() for p in layer.parameters()) == 3 * 5 * 5


def test_taylorkan_layer_learns_a_cubic():
    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 64)[:, None]
    y = 0.5 - x + 2 * x**3
    layer = TaylorKANLayer(1, 1, order=3, squash=False)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.05)
    for _ in range(600):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(layer(x), y)
        loss.backward()
        optimizer.step()
    assert loss.item() < 1e-5
    np.testing.assert_allclose(layer.coefficients.detach().flatten(), [0.5, -1, 0, 2], atol=0.01)
    # an MLP-sized linear map cannot: the cubic term is what the edge function adds
    assert torch.nn.functional.mse_loss(x * torch.linalg.lstsq(x, y).solution, y) > 0.01


def test_taylorkan_head_keeps_learning_at_the_fast_recipes_settings():
    """4,128 standardised features, input dropout .5, AdamW 1e-3, Norm-in-Norm (experiment=
    biq2021_fast): without the LayerNorm between its layers the head froze at a constant output
    within 4 epochs (every hidden node saturated the next tanh)."""
    from iqa_lab.losses import get_loss

    torch.manual_seed(0)
    x = torch.randn(576, 4128) * torch.rand(4128) * 3 + torch.rand(4128)
    y = x @ (torch.randn(4128) / 64) + 0.3 * torch.randn(576)
    head = TaylorKANHead(
        4128, dropout=0.5, input_norm=True, input_norm_momentum=None, input_dropout=0.5
    )
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=5e-2)
    loss_fn = get_loss("norm_in_norm")
    for _ in range(4):
        head.train()
        for i in range(0, 512, 32):
            optimizer.zero_grad()
            loss_fn(head(x[i : i + 32]), y[i : i + 32]).backward()
            optimizer.step()
    with torch.no_grad():
        assert head.eval()(x[512:]).std() > 1e-3


def test_taylorkan_head_is_selectable_for_any_model(make_cfg):
    cfg = make_cfg("train", ["regressor=taylorkan", *TINY_BACKBONE])
    model = hydra.utils.instantiate(cfg.model)
    assert isinstance(model.head, TaylorKANHead)
    assert [type(m).__name__ for m in model.head.net] == [
        "TaylorKANLayer",
        "LayerNorm",
        "Dropout",
        "TaylorKANLayer",
    ]
    kan = [m for m in model.head.net if isinstance(m, TaylorKANLayer)]
    assert [(m.in_features, m.out_features, m.order) for m in kan] == [
        (model.backbone.num_features, 64, 3),
        (64, 1, 3),
    ]
    with torch.no_grad():  # the constant terms start at init_bias, the features' terms near 0
        assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2,)
    # the default stays the MLP head; StairIQA's per-database heads swap too
    assert isinstance(hydra.utils.instantiate(make_cfg("train", TINY_BACKBONE).model).head, MLPHead)
    stair = make_cfg("train", ["model=stairiqa", "regressor=taylorkan", *TINY_BACKBONE])
    heads = hydra.utils.instantiate(stair.model, heads=["a", "b"]).heads
    assert all(isinstance(h, TaylorKANHead) for h in heads.values())
    with pytest.raises(ConfigError, match="has no activation"):
        build_head(8, {"type": "taylorkan", "activation": "gelu"})
    with pytest.raises(ConfigError, match="model.head.type"):
        build_head(8, {"type": "spline"})


# --- visual prompts ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind, width", [("padding", 4), ("full", 0)])
def test_prompt_parameter_count_is_the_formula(kind, width):
    prompt = PixelPrompt([20, 30], kind=kind, width=width or 1)
    count = sum(p.numel() for p in prompt.parameters())
    expected = 3 * 2 * 4 * (20 + 30 - 8) if kind == "padding" else 3 * 20 * 30
    assert count == prompt.expected_parameters() == expected
    with torch.no_grad():
        for p in prompt.parameters():
            p.fill_(1.0)
    pattern = prompt.pattern()[0, 0]
    if kind == "padding":  # a frame of 4 pixels, the inside untouched
        assert pattern[4:16, 4:26].abs().sum() == 0 and pattern.sum() == count / 3
    with pytest.raises(ConfigError, match="model.prompt.size"):
        prompt(torch.zeros(1, 3, 20, 31))


def test_visual_prompt_trains_only_the_prompt_and_the_head(make_cfg):
    cfg = make_cfg(
        "train",
        ["model=visual_prompt", "data.transforms.train.resize=[48,48]", "model.prompt.width=4"],
    )
    model = hydra.utils.instantiate(cfg.model)
    head = sum(p.numel() for p in model.head.parameters())
    assert model.trainable_params == 3 * 2 * 4 * (48 + 48 - 8) + head
    frozen = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    prompt = {k: v.clone() for k, v in model.prompt.state_dict().items()}
    datamodule = hydra.utils.instantiate(cfg.data, protocol=cfg.protocol)
    bare_trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0).fit(model, datamodule)
    assert all(p.grad is None for p in model.backbone.parameters())
    state = model.backbone.state_dict()  # weights and BatchNorm statistics bit-identical
    assert all(torch.equal(state[k], v) for k, v in frozen.items())
    assert any(not torch.equal(model.prompt.state_dict()[k], v) for k, v in prompt.items())
    assert not model.backbone.training
    with pytest.raises(InstantiationException, match="frozen_stages=0"):
        hydra.utils.instantiate(
            make_cfg("train", ["model=visual_prompt", "model.backbone.frozen_stages=8"]).model
        )


# --- each part through the training entry point -------------------------------------------------

PARTS = {
    "jndmix": ["augment=jndmix", *TINY_BACKBONE],
    "taylorkan": ["regressor=taylorkan", *TINY_BACKBONE],
    "visual_prompt": ["model=visual_prompt", "data.transforms.train.resize=[48,48]"],
}


@pytest.mark.parametrize("part", sorted(PARTS))
def test_each_part_trains_through_the_entry_point(make_cfg, part):
    cfg = make_cfg("train", ["debug=limit", "trainer.max_epochs=1", *QUIET, *PARTS[part]])
    metrics = train(cfg)
    assert (
        math.isfinite(metrics["test/rmse"]) and Path(cfg.paths.output_dir, "results.json").is_file()
    )
