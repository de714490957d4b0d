"""MSLIQA (Jamshidi Avanaki et al. 2024): one head per zoom level, zoom-level batches, the head
chosen on validation, the Table 1 ablation's configs, and a tiny model that learns."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from iqa_lab.data.collate import IQACollate
from iqa_lab.data.transforms import build_transform
from iqa_lab.errors import ConfigError
from iqa_lab.evaluation.metrics import srcc
from iqa_lab.losses import get_loss
from iqa_lab.models.msliqa import BEST_HEAD_KEY, MSLIQA
from tests.conftest import CONF_DIR, TINY_DATA
from tests.planted import pattern, plant, png_bytes
from tests.train_runs import run_app, run_train

ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-2}
LEVELS = [
    {"name": "crop24", "crop": 24},
    {"name": "resize40_crop32", "resize": 40, "crop": 32},
    {"name": "full"},
]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is faster, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_msliqa(level_batches: str = "together", **extra) -> MSLIQA:
    torch.manual_seed(0)
    return MSLIQA(
        backbone={"name": "test_efficientnet"},
        head={"hidden": 16, "dropout": 0.0},
        zoom="tiny",
        zoom_sets={"tiny": LEVELS},
        level_batches=level_batches,
        optimizer=ADAM,
        **extra,
    )


def zoom_batch(count: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    transform = build_transform("train", zoom=LEVELS, hflip=True)
    items = [
        {
            **transform(image=rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)),
            "mos": torch.tensor(float(i) / count),
            "index": torch.tensor(i),
        }
        for i in range(count)
    ]
    return IQACollate()(items)


def head_grads(model: MSLIQA, batch: dict) -> dict[str, torch.Tensor | None]:
    model.zero_grad()
    loss, _ = model.model_step(batch, "train")
    loss.backward()
    return {
        name: (None if head.net[-1].weight.grad is None else head.net[-1].weight.grad.clone())
        for name, head in model.heads.items()
    }


def test_zoom_views_are_batched_per_level_with_static_shapes():
    batch = zoom_batch()
    assert {name: tuple(views.shape) for name, views in batch["image"].items()} == {
        "crop24": (4, 3, 24, 24),
        "resize40_crop32": (4, 3, 32, 32),
        "full": (4, 3, 36, 44),
    }
    assert "mask" not in batch


def test_full_images_of_different_sizes_are_padded_with_a_mask():
    transform = build_transform("train", zoom=LEVELS)
    items = [
        {**transform(image=np.zeros((h, w, 3), np.uint8)), "mos": torch.tensor(0.5)}
        for h, w in ((36, 44), (30, 50))
    ]
    for i, item in enumerate(items):
        item["index"] = torch.tensor(i)
    batch = IQACollate()(items)
    assert tuple(batch["image"]["full"].shape) == (2, 3, 36, 50)
    assert list(batch["mask"]) == ["full"]  # the fixed-size levels stack as they are
    assert batch["mask"]["full"][1, :30, :50].all() and not batch["mask"]["full"][1, 30:].any()
    model = tiny_msliqa()
    loss, _ = model.model_step(batch, "train")
    assert torch.isfinite(loss)


def test_each_zoom_head_gets_gradients_only_from_its_own_level():
    model = tiny_msliqa().train()
    batch = zoom_batch()
    before = head_grads(model, batch)
    assert all(g is not None and g.abs().sum() > 0 for g in before.values())
    changed = {**batch, "image": dict(batch["image"])}
    changed["image"]["resize40_crop32"] = torch.rand_like(batch["image"]["resize40_crop32"])
    after = head_grads(model, changed)
    assert not torch.allclose(after["resize40_crop32"], before["resize40_crop32"])
    for other in ("crop24", "full"):
        torch.testing.assert_close(after[other], before[other], rtol=0, atol=0)


def test_alternating_levels_train_one_head_per_step_in_turn():
    model = tiny_msliqa("alternate").train()
    batch = zoom_batch()
    grads = head_grads(model, batch)  # global_step 0: the first level
    assert grads["crop24"] is not None
    assert grads["resize40_crop32"] is None and grads["full"] is None


def test_loss_is_weighted_mse_plus_plcc_from_losses():
    pred, target = torch.tensor([0.1, 0.4, 0.2, 0.9]), torch.tensor([0.0, 0.5, 0.5, 1.0])
    loss = get_loss({"name": "mse+plcc", "mse_weight": 2.0, "plcc_weight": 3.0})
    plcc = float(np.corrcoef(pred, target)[0, 1])
    mse = float(((pred - target) ** 2).mean())
    assert float(loss(pred, target)) == pytest.approx(2.0 * mse + 3.0 * (1 - plcc) / 2, rel=1e-5)


def test_the_head_best_on_validation_scores_the_test_and_is_saved():
    model = tiny_msliqa()
    target = torch.linspace(0, 1, 8)
    noise = torch.rand(8)
    for name in model.head_names:
        good = name == "resize40_crop32"
        model.level_metrics[name].update(target if good else noise, target)
        model.level_losses[name].update(torch.tensor(0.1))
    model.log_dict = lambda *a, **k: None  # no trainer to log to
    values = model._log_epoch("val")
    assert model.best_head == "resize40_crop32" and float(values["val/srcc"]) == pytest.approx(1)
    assert model.heads_for({}) == ["resize40_crop32"]
    checkpoint = {}
    model.on_save_checkpoint(checkpoint)
    fresh = tiny_msliqa()
    fresh.on_load_checkpoint(checkpoint)
    assert checkpoint[BEST_HEAD_KEY] == fresh.best_head == "resize40_crop32"
    fresh.active_head = "full"  # head=full
    assert fresh.heads_for({}) == ["full"]


def test_training_on_single_views_is_refused_with_the_fix():
    model = tiny_msliqa()
    batch = {"image": torch.rand(2, 3, 32, 32), "mos": torch.rand(2), "index": torch.arange(2)}
    with pytest.raises(ConfigError, match="data.transforms.train.zoom"):
        model.model_step(batch, "train")


@pytest.mark.parametrize("experiment", ["msliqa", "msliqa_synthetic"])
def test_table1_ablation_composes_resize_x_crop_x_tta(experiment):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        sweep = compose(
            "train",
            [f"experiment={experiment}", "hparams_search=msliqa_table1"],
            return_hydra_config=True,
        ).hydra.sweeper.params
        assert dict(sweep) == {
            "model.zoom": "baseline,multi_resize,multi_crop,mixed",
            "tta": "none,msliqa108",
        }
        for zoom in sweep["model.zoom"].split(","):
            for tta in sweep["tta"].split(","):
                cfg = compose(
                    "train", [f"experiment={experiment}", f"model.zoom={zoom}", f"tta={tta}"]
                )
                train_db = cfg.protocol.train_dbs[0]
                levels = cfg.data.databases[train_db].transforms.train.zoom
                names = [level["name"] for level in levels]
                assert names == [level["name"] for level in cfg.model.zoom_sets[zoom]]
                assert len(names) == {"baseline": 1, "mixed": 4}.get(zoom, 5)
                assert cfg.tta.name == tta
    sizes = {"msliqa": [224, 384], "msliqa_synthetic": [84, 144]}[experiment]
    assert list(cfg.tta.options.sizes) == sizes


STEPS = 80


def test_a_tiny_msliqa_learns_a_synthetic_set():
    """Noise of a known strength lowers the quality: the heads learn it from zoom views."""
    rng = np.random.default_rng(0)
    transform = build_transform("train", zoom=LEVELS, hflip=True)
    transform.set_random_seed(0)
    eval_transform = build_transform("test")
    items, full = [], []
    for i in range(48):
        strength = rng.uniform(0, 1)
        base = np.full((36, 44, 3), rng.integers(60, 200), np.float64)
        noisy = base + rng.normal(0, 80 * strength, base.shape)
        image = np.clip(noisy, 0, 255).astype(np.uint8)
        mos = torch.tensor(1 - strength, dtype=torch.float32)
        items.append({**transform(image=image), "mos": mos, "index": torch.tensor(i)})
        full.append((eval_transform(image=image)["image"], float(mos)))
    train, held_out = items[:32], full[32:]
    model = tiny_msliqa().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.log = lambda *a, **k: None
    order = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(STEPS):
        batch = IQACollate()([train[i] for i in torch.randperm(len(train), generator=order)[:8]])
        loss, _ = model.model_step(batch, "train")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    model.eval()
    images = torch.stack([image for image, _ in held_out])
    mos = np.array([value for _, value in held_out])
    with torch.no_grad():
        scores = model.score(images)  # (16, 3): every head on the full image
    for column, name in enumerate(model.head_names):
        assert srcc(scores[:, column].numpy(), mos) > 0.8, name


@pytest.mark.slow
def test_train_then_eval_with_108_views_offline(tmp_path, cache_dir):
    """``python -m iqa_lab.train model=msliqa`` then ``python -m iqa_lab.eval … tta=msliqa108``."""
    tiny = [
        "model=msliqa",
        "+model.zoom_sets.tiny=[{name: crop32, crop: 32},{name: resize48, resize: 48}]",
        "model.zoom=tiny",
        "model.backbone.name=test_efficientnet",
        "model.backbone.pretrained=false",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "callbacks.progress_bar=null",
        "reuse_finished=false",
    ]
    run_train([*TINY_DATA, *tiny], tmp_path / "train", cache_dir)
    results = json.loads((tmp_path / "train" / "results.json").read_text())
    assert np.isfinite(results["metrics"]["test/srcc"])
    (ckpt,) = [p for p in (tmp_path / "train" / "checkpoints").glob("epoch_*.ckpt")]
    done = run_app(
        "eval",
        [
            *TINY_DATA,
            f"ckpt_path={ckpt}",
            "tta=msliqa108",
            "trainer=cpu",
            "paths.cache_dir=" + str(cache_dir),
        ],
        tmp_path / "eval",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert np.isfinite(evaluated["metrics"]["test/srcc"])
    assert evaluated["metrics"]["test/srcc"] != results["metrics"]["test/srcc"]
    photos = tmp_path / "photos"
    plant(photos, {f"{i}.png": png_bytes(pattern(40, 56, seed=i)) for i in range(2)})
    output = tmp_path / "scores.json"
    scored = run_app(
        "score",
        [f"ckpt={ckpt}", f"inputs={photos}", "tta=msliqa108", f"output={output}"],
        tmp_path / "score",
    )
    assert scored.returncode == 0, scored.stderr[-3000:]
    about = json.loads(output.read_text())
    assert about["about"]["tta"] == "msliqa108"
    assert all(np.isfinite(row["score"]) for row in about["scores"])
