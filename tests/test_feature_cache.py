"""The frozen-feature cache: hits, misses and invalidation on every key part; cached features equal
recomputed ones; a cache larger than its memory budget still trains (read from disk)."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from iqa_lab.data.datamodule import IQADataset
from iqa_lab.data.transforms import build_transform
from iqa_lab.errors import ConfigError
from iqa_lab.evaluation.runstore import identity
from iqa_lab.nn.backbones import Backbone
from iqa_lab.nn.feature_cache import FeatureStore, file_content_hash
from iqa_lab.runs import build_trainer, seeded_datamodule
from iqa_lab.train import train
from iqa_lab.training.feature_cache import (
    CachedFeatureDataset,
    FeatureCache,
    fill_store,
    set_key,
    view_seed,
)

QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null"]
# Tolerance, features of order 1: float16 storage rounds to nearest, |error| <= 2**-11 |x|; the
# cache computes in batches, the check one image at a time, which reorders float32 sums: up to
# ~1e-6 absolute. So float16 rows: |cached - fresh| <= 2**-10 |fresh| + 1e-5; float32: <= 1e-5.
FP16_RTOL, FP16_ATOL = 2.0**-10, 1e-5


def _write_images(folder, count=4, size=40, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for k in range(count):
        pixels = rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{k}.png")
        names.append(f"img{k}.png")
    return names


def _dataset(folder, names, split="train", **transform):
    records = pd.DataFrame({"image": names, "mos": np.linspace(0.1, 0.9, len(names))})
    return IQADataset(records, folder, build_transform(split, **transform), split=split)


@pytest.fixture(scope="module")
def backbone():
    return Backbone("tf_efficientnet_lite0", pretrained=False, frozen_stages=3).eval()


def _fill(root, backbone, dataset, views=2, dtype="float16"):
    store = FeatureStore(root, set_key(backbone, dataset.transform), dtype)
    train = dataset.split == "train"
    return fill_store(store, backbone, dataset, views, train, batch_size=8)


def test_hit_miss_and_invalidation_on_every_key_part(tmp_path, backbone):
    names = _write_images(tmp_path / "img")
    crop = {"crop_size": 32, "hflip": True}
    data = _dataset(tmp_path / "img", names, **crop)
    root = tmp_path / "cache"
    rows, computed = _fill(root, backbone, data)
    assert computed == 4 and rows.shape == (4, 2) and len(set(rows.flatten())) == 8
    again, computed = _fill(root, backbone, data)  # a new run: a fresh store object, same key
    assert computed == 0 and (again == rows).all()

    # backbone (name)
    other = Backbone("tf_efficientnet_lite1", pretrained=False, frozen_stages=3).eval()
    assert _fill(root, other, data)[1] == 4
    # weights: one value of the frozen prefix changes
    changed = Backbone("tf_efficientnet_lite0", pretrained=False, frozen_stages=3).eval()
    changed.load_state_dict(backbone.state_dict())
    assert _fill(root, changed, data)[1] == 0
    with torch.no_grad():
        changed.model.blocks[2][0].conv_pwl.weight[0, 0] += 0.01
    assert _fill(root, changed, data)[1] == 4
    # weights of the trainable part do not matter
    with torch.no_grad():
        changed.load_state_dict(backbone.state_dict())
        changed.model.blocks[5][0].conv_pwl.weight[0, 0] += 0.01
    assert _fill(root, changed, data)[1] == 0
    # stage
    deeper = Backbone("tf_efficientnet_lite0", pretrained=False, frozen_stages=4).eval()
    deeper.load_state_dict(backbone.state_dict())
    assert _fill(root, deeper, data)[1] == 4
    # transform (crop size, a flip)
    assert _fill(root, backbone, _dataset(tmp_path / "img", names, crop_size=24, hflip=True))[1]
    assert _fill(root, backbone, _dataset(tmp_path / "img", names, crop_size=32))[1] == 4
    # view: a third view is new, the first two are hits
    rows3, computed = _fill(root, backbone, data, views=3)
    assert computed == 4 and (rows3[:, :2] == rows).all()
    # dtype
    assert _fill(root, backbone, data, dtype="float32")[1] == 4
    # image content: one file rewritten with other pixels, same name
    _write_images(tmp_path / "other", count=1, seed=7)
    (tmp_path / "img" / "img2.png").write_bytes((tmp_path / "other" / "img0.png").read_bytes())
    rows_new, computed = _fill(root, backbone, data)
    assert computed == 1
    assert (rows_new[[0, 1, 3]] == rows[[0, 1, 3]]).all() and not (rows_new[2] == rows[2]).any()
    # the same content under another name is a hit
    (tmp_path / "img" / "copy.png").write_bytes((tmp_path / "img" / "img0.png").read_bytes())
    copy_rows, computed = _fill(root, backbone, _dataset(tmp_path / "img", ["copy.png"], **crop))
    assert computed == 0 and (copy_rows[0] == rows[0]).all()


@pytest.mark.parametrize("dtype,frozen_stages", [("float16", 3), ("float32", 3), ("float16", 8)])
def test_cached_features_equal_recomputed(tmp_path, dtype, frozen_stages):
    """Stages 1-3 frozen (a feature map is cached), or all 7 and the pooling (8: a vector)."""
    backbone = Backbone("tf_efficientnet_lite0", pretrained=False, frozen_stages=frozen_stages)
    backbone.eval()
    names = _write_images(tmp_path / "img")
    root = tmp_path / "cache"
    for split, transform, views in (
        ("train", {"crop_size": 32, "hflip": True}, 3),
        ("test", {"crop_size": 32}, 1),
    ):
        data = _dataset(tmp_path / "img", names, split=split, **transform)
        store = FeatureStore(root, set_key(backbone, data.transform), dtype)
        rows, _ = fill_store(store, backbone, data, views, split == "train", batch_size=5)
        reader = store.reader(in_memory=False)
        assert reader[0].shape == ((40, 4, 4) if frozen_stages == 3 else (1280,))
        for i, name in enumerate(names):
            pixels = data._decode(i)["image"]
            content = file_content_hash(tmp_path / "img" / name)
            for view in range(views):
                if split == "train":
                    data.transform.set_random_seed(view_seed(content, view))
                image = data.transform(image=pixels)["image"]
                with torch.no_grad():
                    fresh = backbone.forward_prefix(image[None])[0].numpy()
                cached = reader[rows[i, view]]
                if dtype == "float16":
                    np.testing.assert_allclose(cached, fresh, rtol=FP16_RTOL, atol=FP16_ATOL)
                else:
                    np.testing.assert_allclose(cached, fresh, rtol=0, atol=1e-5)
        # the views of a training image differ (crop / flip), an eval image has one
        if split == "train":
            assert not np.allclose(reader[rows[0, 0]], reader[rows[0, 1]])
        # scoring from cached features = scoring from pixels
        cached_ds = CachedFeatureDataset(data, rows, reader)
        backbone.reads_prefix_features = True
        from_cache = backbone(torch.stack([cached_ds[i]["image"] for i in range(4)]))
        backbone.reads_prefix_features = False
        if split == "test":
            pixels = torch.stack([data[i]["image"] for i in range(4)])
            from_pixels = backbone(pixels)
            tolerance = 1e-3 if dtype == "float16" else 1e-5
            torch.testing.assert_close(from_cache, from_pixels, rtol=tolerance, atol=tolerance)


def test_frozen_prefix_gets_no_gradient_and_keeps_batchnorm(backbone):
    model = Backbone("tf_efficientnet_lite0", pretrained=False, frozen_stages=3).train()
    prefix = model.prefix_modules()
    assert len(prefix) == 2 + 3 and all(not m.training for m in prefix)
    assert all(not p.requires_grad for m in prefix for p in m.parameters())
    assert model.model.blocks[3].training and model.model.conv_head.weight.requires_grad
    before = model.model.bn1.running_mean.clone()
    model(torch.rand(2, 3, 32, 32)).sum().backward()
    assert torch.equal(model.model.bn1.running_mean, before)
    assert model.model.blocks[3][0].conv_pw.weight.grad is not None


def test_bad_frozen_stages_are_refused():
    with pytest.raises(ConfigError, match="frozen_stages=9: 'tf_efficientnet_lite0' has 7 stages"):
        Backbone("tf_efficientnet_lite0", pretrained=False, frozen_stages=9)
    with pytest.raises(ConfigError, match="cannot find the stages of 'vit_tiny_patch16_224'"):
        Backbone("vit_tiny_patch16_224", pretrained=False, frozen_stages=2)
    with pytest.raises(ConfigError, match="needs pooled features"):
        Backbone("tf_efficientnet_lite0", pretrained=False, features_only=True, frozen_stages=2)


def test_cache_larger_than_its_memory_budget_still_trains(make_cfg):
    cfg = make_cfg(
        "train",
        [
            "trainer.max_epochs=2",
            "model.backbone.frozen_stages=6",
            "callbacks.feature_cache.views=2",
            "callbacks.feature_cache.max_ram_mb=0.01",  # 10 KiB; the cache holds ~50 KiB
            "data.transforms.train.crop_size=48",
            "data.transforms.eval.crop_size=48",
        ]
        + QUIET,
    )
    datamodule = seeded_datamodule(cfg, "fit")
    model = hydra.utils.instantiate(cfg.model)
    trainer = build_trainer(cfg)
    cache = next(c for c in trainer.callbacks if isinstance(c, FeatureCache))
    head_before = model.head.net[0].weight.detach().clone()
    frozen_before = model.backbone.model.blocks[0][0].conv_dw.weight.detach().clone()
    trainer.fit(model, datamodule=datamodule)
    assert cache.streaming is True
    train_ds = datamodule.datasets["train"]
    assert isinstance(train_ds, CachedFeatureDataset)
    assert isinstance(train_ds.features.rows, np.memmap)
    stored = sum(p.stat().st_size for p in Path(cfg.paths.cache_dir).glob("features/*/rows.bin"))
    assert stored > cache.max_ram_bytes
    total = sum(len(ds) for ds in datamodule.datasets.values())
    assert sum(cache.computed.values()) in (0, total)
    assert train_ds[0]["image"].shape == (192, 2, 2)
    assert trainer.current_epoch == 2
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert not torch.equal(model.head.net[0].weight, head_before)
    assert torch.equal(model.backbone.model.blocks[0][0].conv_dw.weight, frozen_before)
    trainer.test(model, datamodule=datamodule)
    assert len(model.test_predictions["prediction"]) == len(datamodule.datasets["test"])
    assert torch.isfinite(trainer.callback_metrics["test/srcc"])


def test_second_run_reads_every_feature_from_the_cache(make_cfg, caplog):
    overrides = [
        "trainer.max_epochs=1",
        "model.backbone.frozen_stages=6",
        "reuse_finished=false",
        "data.transforms.train.crop_size=48",
        "data.transforms.eval.crop_size=48",
    ] + QUIET
    metrics = []
    for _ in range(2):
        caplog.clear()
        with caplog.at_level("INFO", logger="iqa_lab.training.feature_cache"):
            metrics.append(train(make_cfg("train", overrides)))
        summary = [r.getMessage() for r in caplog.records if "images computed" in r.getMessage()]
        assert len(summary) == 1 and "in memory" in summary[0]
    # val and test share the eval transform (one store); run 1 computed all, run 2 none
    assert summary[0].startswith("feature cache: 0 images computed (train 0, val 0, test 0)")
    assert metrics[0]["test/srcc"] == metrics[1]["test/srcc"]
    assert float(metrics[1]["test/n"]) > 0


def test_a_broken_store_heals(tmp_path, backbone, caplog):
    names = _write_images(tmp_path / "img", count=2)
    data = _dataset(tmp_path / "img", names, crop_size=32)
    root = tmp_path / "cache"
    rows, _ = _fill(root, backbone, data)
    store = FeatureStore(root, set_key(backbone, data.transform))
    # an append killed before its index was written: the extra bytes are cut off
    with open(store.rows_path, "ab") as handle:
        handle.write(b"\0" * 100)
    assert _fill(root, backbone, data)[1] == 0
    assert store.rows_path.stat().st_size == 4 * store.row_bytes
    # an unreadable index: rebuilt, with a warning naming the store
    (store.folder / "index.json").write_text('{"trunc')
    with caplog.at_level("WARNING", logger="iqa_lab"):
        again, computed = _fill(root, backbone, data)
    assert computed == 2 and (again == rows).all()
    assert f"feature cache {store.folder}" in caplog.text and "rebuilding it" in caplog.text


@pytest.mark.parametrize(
    "name,frozen_stages",
    [("tf_efficientnet_lite0", 3), ("tf_efficientnet_lite0", 8), ("resnet18", 2), ("resnet18", 5)],
)
def test_a_frozen_prefix_computes_what_the_whole_backbone_does(name, frozen_stages):
    whole = Backbone(name, pretrained=False).eval()
    split = Backbone(name, pretrained=False, frozen_stages=frozen_stages).eval()
    split.load_state_dict(whole.state_dict())
    images, mask = torch.rand(2, 3, 48, 64), torch.ones(2, 48, 64)
    mask[1, :, 40:] = 0
    with torch.no_grad():
        torch.testing.assert_close(split(images), whole(images), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            split(images, mask=mask), whole(images, mask=mask), rtol=1e-5, atol=1e-5
        )
        prefix = split.forward_prefix(images)
        split.reads_prefix_features = True
        torch.testing.assert_close(split(prefix), whole(images), rtol=1e-5, atol=1e-5)


def test_the_run_key_sees_the_views_not_the_memory_budget(make_cfg):
    def key(*overrides):
        return identity(make_cfg("train", ["model.backbone.frozen_stages=8", *overrides]))

    base = key()
    assert key("callbacks.feature_cache.views=2") != base
    assert key("callbacks.feature_cache.dtype=float32") != base
    assert key("callbacks.feature_cache.max_ram_mb=1") == base
