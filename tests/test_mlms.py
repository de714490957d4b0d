"""MLMS-IQA (multi-level and multi-scale deep IQA): the joint loss against NumPy, the multi-scale
module's encodings and branches, the shared ViT of the FR model, the distorted-image-ratio
protocol, several views per training pair, training and quality maps."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr

from iqa_lab.errors import ConfigError
from iqa_lab.losses import (
    batch_softmax_kl,
    get_loss,
    mlms_joint_loss,
    ordinal_pair_loss,
)
from iqa_lab.nn.multiscale import MultiScaleQuality, grid_positions
from tests.conftest import TINY_DATA
from tests.planted import pattern, plant, png_bytes
from tests.train_runs import bare_trainer, run_app, run_train

HEAD = {"hidden": 8, "dropout": 0.0}
TINY_FR = [
    "model=mlms_fr",
    "model.vit.name=test_vit",
    "model.vit.layers=[1,3,5]",
    "model.fusion_channels=32",
    "model.head.hidden=16",
]
TINY_NR = [
    "model=mlms_nr",
    "model.backbone.name=test_efficientnet",
    "model.backbone.pretrained=false",
    "model.feature_level=2",
    "model.multiscale.dim=24",
    "model.multiscale.pool_sizes=[1,2]",
    "model.multiscale.depths=[1,1]",
    "model.multiscale.num_heads=[3,6]",
]
QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null"]


# --- the joint loss (Eqs. 16–23) against NumPy --------------------------------------------------


def _batch(seed: int = 0, n: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    target = rng.uniform(0, 1, n)
    target[3] = target[1]  # a tie: γ keeps the ordinal term finite
    pred = target + rng.normal(0, 0.2, n)
    return torch.tensor(pred, dtype=torch.float64), torch.tensor(target, dtype=torch.float64)


def _np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _np_kl(pred: np.ndarray, target: np.ndarray) -> float:
    w, w_hat = _np_softmax(pred), _np_softmax(target)
    return float((w_hat * np.log(w_hat / w)).sum())


def _np_ordinal(pred: np.ndarray, target: np.ndarray, gamma: float) -> float:
    terms = []
    for u in range(len(pred)):
        for k in range(u + 1, len(pred)):
            true = target[u] - target[k]
            signed = (pred[u] - pred[k]) * true / (abs(true) + gamma)
            omega = (pred[u] - target[u]) ** 2 + (pred[k] - target[k]) ** 2
            terms.append(max(0.0, omega - signed))
    return float(np.mean(terms))


def test_kl_term_is_the_kl_of_batch_softmaxes_targets_first():
    pred, target = _batch()
    value = batch_softmax_kl(pred, target).item()
    assert value == pytest.approx(_np_kl(pred.numpy(), target.numpy()), rel=1e-10)
    assert value > 0
    assert batch_softmax_kl(target, target).item() == pytest.approx(0.0, abs=1e-12)
    # not symmetric: the target distribution is the first argument
    assert value != pytest.approx(_np_kl(target.numpy(), pred.numpy()), rel=1e-6)


@pytest.mark.parametrize("gamma", [1e-3, 0.1])
def test_ordinal_term_is_the_mean_pairwise_hinge_of_eqs_20_to_22(gamma):
    pred, target = _batch(seed=1)
    value = ordinal_pair_loss(pred, target, gamma=gamma).item()
    assert value == pytest.approx(_np_ordinal(pred.numpy(), target.numpy(), gamma), rel=1e-10)
    assert value > 0
    # exact predictions, all pairs ordered: zero loss; one image: zero
    assert ordinal_pair_loss(target, target, gamma=gamma).item() == pytest.approx(0.0)
    assert ordinal_pair_loss(pred[:1], target[:1]).item() == 0.0
    # a reversed ranking costs more than the right one
    assert ordinal_pair_loss(-target + 1, target).item() > value


def test_joint_loss_is_the_weighted_sum_and_comes_from_config():
    pred, target = _batch(seed=2)
    p, t = pred.numpy(), target.numpy()
    expected = 0.5 * np.mean((p - t) ** 2) + 2.0 * _np_kl(p, t) + 3.0 * _np_ordinal(p, t, 0.01)
    direct = mlms_joint_loss(pred, target, 0.5, 2.0, 3.0, gamma=0.01).item()
    assert direct == pytest.approx(expected, rel=1e-10)
    spec = {"name": "mlms_joint", "mse_weight": 0.5, "kl_weight": 2.0, "ordinal_weight": 3.0}
    assert get_loss({**spec, "gamma": 0.01})(pred, target).item() == pytest.approx(expected)
    assert get_loss("kl_batch") is batch_softmax_kl
    assert get_loss("ordinal") is ordinal_pair_loss
    with pytest.raises(ConfigError, match="no setting"):
        get_loss({"name": "mlms_joint", "beta": 1.0})
    pred.requires_grad_(True)
    mlms_joint_loss(pred, target).backward()
    assert torch.isfinite(pred.grad).all()


# --- the multi-scale module (§2) -----------------------------------------------------------------


def test_grid_positions_map_each_scale_onto_the_table_proportionally():
    rows, cols = grid_positions(3, 5, 10)
    assert rows.tolist() == [0, 3, 6] and cols.tolist() == [0, 2, 4, 6, 8]
    rows, cols = grid_positions(20, 1, 10)  # finer than the table: two blocks per entry
    assert rows.tolist() == [i // 2 for i in range(20)] and cols.tolist() == [0]


@pytest.mark.parametrize("size", [(12, 12), (9, 14), (3, 5)])
def test_positional_encoding_fits_every_pooling_scale(size):
    torch.manual_seed(0)
    module = MultiScaleQuality(
        dim=12, pool_sizes=[1, 2, 4, 8], depths=[1, 1, 1, 1], num_heads=[3, 3, 6, 6], head=HEAD
    )
    features = torch.randn(2, 12, *size)
    maps = module.scale_maps(features)
    assert len(maps) == 4
    for u, (pool, tokens) in enumerate(zip([1, 2, 4, 8], maps)):
        rows, cols = -(-size[0] // pool), -(-size[1] // pool)
        assert tokens.shape == (2, rows, cols, 12)
        pooled = torch.nn.functional.avg_pool2d(features, pool, ceil_mode=True)
        r, c = grid_positions(rows, cols, module.position.table)
        expected = pooled.permute(0, 2, 3, 1) + module.position.weight[r][:, c] + module.scale[u]
        torch.testing.assert_close(tokens, expected)
    per_scale, fused = module(features)
    assert per_scale.shape == (2, 4) and fused.shape == (2,)
    # equal fusion weights at the start: the fused score is the mean of the scales'
    torch.testing.assert_close(fused, per_scale.mean(dim=1))


@pytest.mark.parametrize(
    ("depths", "heads"), [([2, 4, 4, 2], [3, 6, 6, 3]), ([4, 4, 4, 4], [6, 6, 6, 6]), ([1], [3])]
)
def test_swin_branches_follow_the_config(depths, heads):
    module = MultiScaleQuality(
        dim=24, pool_sizes=[1, 2, 4, 8][: len(depths)], depths=depths, num_heads=heads, head=HEAD
    )
    assert len(module.branches) == len(module.regressors) == len(depths)
    assert [len(branch.blocks) for branch in module.branches] == depths
    assert [b.blocks[0].attn.num_heads for b in module.branches] == heads
    # regular then shifted windows inside a branch (Eqs. 6–8)
    shifts = [blk.shift_size for blk in module.branches[0].blocks]
    assert shifts[0] == (0, 0) and (len(shifts) == 1 or shifts[1] == (2, 2))


def test_branch_config_mismatches_are_refused():
    with pytest.raises(ConfigError, match="one pooling scale, depth and head count"):
        MultiScaleQuality(
            dim=24, pool_sizes=[1, 2], depths=[2, 4, 4, 2], num_heads=[3] * 4, head=HEAD
        )
    with pytest.raises(ConfigError, match="divisible"):
        MultiScaleQuality(dim=20, pool_sizes=[1], depths=[2], num_heads=[3], head=HEAD)


def test_mlms_nr_scores_through_every_scale(make_cfg):
    import hydra

    cfg = make_cfg("train", TINY_NR)
    model = hydra.utils.instantiate(cfg.model)
    per_scale, fused = model.scale_scores(torch.rand(3, 3, 64, 64))
    assert per_scale.shape == (3, 2)
    torch.testing.assert_close(model(torch.rand(2, 3, 64, 64)).shape, torch.Size([2]))
    assert model.needs == frozenset() and model.quality_map(torch.rand(1, 3, 64, 64)) is None


# --- the FR model (§3) ---------------------------------------------------------------------------


def tiny_fr(make_cfg):
    import hydra

    return hydra.utils.instantiate(make_cfg("train", TINY_FR).model)


def test_fr_model_has_one_vit_shared_by_reference_and_image(make_cfg):
    from iqa_lab.nn.vit_layers import ViTLayers

    torch.manual_seed(0)
    model = tiny_fr(make_cfg).eval()
    vits = [m for m in model.modules() if isinstance(m, ViTLayers)]
    assert vits == [model.vit] and model.pretrained_parts() == {"vit": model.vit}
    assert model.needs == frozenset({"reference"})
    calls = []
    model.vit.register_forward_hook(lambda mod, inputs, out: calls.append(inputs[0].shape))
    image, reference = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    score = model(image, reference=reference)
    assert calls == [torch.Size([4, 3, 64, 64])]  # one pass, both images
    assert score.shape == (2,)
    # identical inputs: every difference map is zero, whatever the pair
    zero = model.patch_scores(image, image)
    torch.testing.assert_close(zero[0], model.patch_scores(reference, reference)[0])
    # the quality map: score x weight per patch, its mean the image score
    qmap = model.quality_map(image, reference=reference)
    assert qmap.shape == (2, 4, 4)
    torch.testing.assert_close(qmap.mean(dim=(1, 2)), score)
    with pytest.raises(ConfigError, match="full-reference"):
        model(image)


def test_fr_model_is_refused_on_a_database_without_references(make_cfg):
    from iqa_lab.train import train

    cfg = make_cfg("train", [*TINY_FR, "data.include_pristine=false", "logger=none", *QUIET])
    with pytest.raises(ValueError, match="database 'synthetic' gives no reference images"):
        train(cfg)


def test_tiny_mlms_fr_learns_the_synthetic_set_better_than_chance(make_cfg):
    import hydra

    torch.manual_seed(0)
    cfg = make_cfg("train", [*TINY_FR, "model.optimizer.lr=1e-3"])
    datamodule = hydra.utils.instantiate(cfg.data, protocol=cfg.protocol)
    datamodule.prepare_data()
    datamodule.setup("fit")
    model = hydra.utils.instantiate(cfg.model)
    datamodule.provide(model.needs)

    def train_srcc() -> float:
        model.eval()
        preds, mos = [], []
        with torch.no_grad():
            for batch in datamodule._loader("train", shuffle=False):
                preds.append(model.predict_batch(batch))
                mos.append(batch["mos"])
        return spearmanr(torch.cat(preds), torch.cat(mos))[0]

    before = train_srcc()
    model.train()
    bare_trainer(max_epochs=6, limit_val_batches=0).fit(
        model, train_dataloaders=datamodule.train_dataloader()
    )
    after = train_srcc()
    assert after > 0.6 and after > before + 0.2, (before, after)


# --- the distorted image ratio (Tables 2–3) ------------------------------------------------------


def _records(refs: int = 4, distorted: int = 9) -> pd.DataFrame:
    rows = []
    for r in range(refs):
        clean = f"images/r{r}_pristine_0.png"
        rows.append({"image": clean, "reference": clean, "ref": f"p{r}", "dist_type": "pristine"})
        rows += [
            {
                "image": f"images/r{r}_d_{d}.png",
                "reference": clean,
                "ref": f"p{r}",
                "dist_type": "d",
            }
            for d in range(distorted)
        ]
    frame = pd.DataFrame(rows)
    frame["db"] = "synthetic"
    frame["split"] = ["train", "test"] * (len(frame) // 2) + ["train"] * (len(frame) % 2)
    return frame


@pytest.mark.parametrize("ratio", [0.5, 0.6, 0.7, 1.0])
def test_distorted_ratio_keeps_that_share_of_distorted_images_in_every_split(ratio):
    from iqa_lab.data.protocols import Protocol, apply_distorted_ratio, pristine_records

    records = _records()
    kept = apply_distorted_ratio(records, Protocol(distorted_ratio=ratio))
    for split, rows in kept.groupby("split"):
        clean = int(pristine_records(rows).sum())
        available = int(pristine_records(records[records["split"] == split]).sum())
        assert clean == (0 if ratio == 1 else available)  # every reference kept (the scarce ones)
        share = (len(rows) - clean) / len(rows)
        assert share == pytest.approx(ratio, abs=0.5 / len(rows)), split
    again = apply_distorted_ratio(records, Protocol(distorted_ratio=ratio))
    assert kept.index.equals(again.index)  # deterministic
    assert apply_distorted_ratio(records, Protocol()).equals(records)


def test_distorted_ratio_refuses_a_database_without_rated_references():
    from iqa_lab.data.protocols import Protocol, apply_distorted_ratio

    records = _records()
    records = records[records["dist_type"] != "pristine"]
    with pytest.raises(ConfigError, match="pristine references"):
        apply_distorted_ratio(records, Protocol(distorted_ratio=0.6))
    with pytest.raises(ConfigError, match="distorted_ratio must be in"):
        Protocol(distorted_ratio=0.0)


def test_distorted_ratio_reaches_the_synthetic_splits(make_cfg):
    import hydra

    cfg = make_cfg("train", ["protocol.distorted_ratio=0.75"])
    datamodule = hydra.utils.instantiate(cfg.data, protocol=cfg.protocol)
    datamodule.prepare_data()
    datamodule.setup("fit")
    records = datamodule.records
    for split, rows in records.groupby("split"):
        clean = (rows["dist_type"] == "pristine").sum()
        assert clean >= 1 and (len(rows) - clean) / len(rows) == pytest.approx(0.75), split


# --- several views per training pair --------------------------------------------------------------


def test_each_training_pair_gets_several_crops_per_epoch_shared_with_its_reference(make_cfg):
    import hydra

    cfg = make_cfg(
        "train",
        ["data.train_views_per_epoch=3", "data.transforms.train.crop_size=24"],
    )
    datamodule = hydra.utils.instantiate(cfg.data, protocol=cfg.protocol)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.provide({"reference"})
    train = datamodule.datasets["train"]
    records = len(train.images)
    assert len(train) == 3 * records and len(datamodule.datasets["test"]) == len(
        datamodule.datasets["test"].images
    )
    assert datamodule.split_sizes()["train"] == records
    train.set_augment_seed(5)
    views = [train[i + j * records] for j in range(3) for i in [1]]
    assert len({int(v["index"]) for v in views}) == 1
    assert not torch.equal(views[0]["image"], views[1]["image"])  # another crop box
    pristine = datamodule.records.loc[datamodule.records["split"] == "train", "dist_type"]
    # the reference's crop box is the image's: a pristine record's view is its own reference
    i = int(np.flatnonzero(pristine.to_numpy() == "pristine")[0])
    for j in range(3):
        item = train[i + j * records]
        torch.testing.assert_close(item["image"], item["reference"])


# --- the entry points ---------------------------------------------------------------------------


def test_train_mlms_fr_then_eval_writes_quality_maps(tmp_path, cache_dir):
    run_train(
        [*TINY_DATA, *TINY_FR, "trainer=cpu", "trainer.max_epochs=1", *QUIET],
        tmp_path / "t",
        cache_dir,
    )
    results = json.loads((tmp_path / "t" / "results.json").read_text())
    assert np.isfinite(results["metrics"]["test/srcc"])
    (ckpt,) = (tmp_path / "t" / "checkpoints").glob("epoch_*.ckpt")
    maps = tmp_path / "maps"
    done = run_app(
        "eval",
        [
            *TINY_DATA,
            f"ckpt_path={ckpt}",
            "trainer=cpu",
            f"paths.cache_dir={cache_dir}",
            f"quality_maps={maps}",
        ],
        tmp_path / "eval",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval" / "results.json").read_text())
    pictures = sorted(maps.glob("*_quality.png"))
    assert len(pictures) == evaluated["metrics"]["test/n"] > 0
    with Image.open(pictures[0]) as picture:
        assert picture.mode == "RGB" and picture.width >= 256
    # iqa-score: the same pictures for new photos against their references (matched by name)
    photos, references = tmp_path / "photos", tmp_path / "refs"
    clean = {f"{i}.png": pattern(64, 64, seed=i) for i in range(3)}
    noisy = {
        n: np.clip(a.astype(int) + (n == "1.png") * 60, 0, 255).astype(np.uint8)
        for n, a in clean.items()
    }
    plant(references, {n: png_bytes(a) for n, a in clean.items()})
    plant(photos, {n: png_bytes(a) for n, a in noisy.items()})
    scored = run_app(
        "score",
        [
            f"ckpt={ckpt}",
            f"inputs={photos}",
            f"reference={references}",
            f"output={tmp_path / 'scores.csv'}",
            f"quality_maps={tmp_path / 'score_maps'}",
        ],
        tmp_path / "score",
    )
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert len(list((tmp_path / "score_maps").glob("*_quality.png"))) == 3


def test_train_mlms_nr_runs_offline(tmp_path, cache_dir):
    run_train(
        [*TINY_DATA, *TINY_NR, "trainer=cpu", "trainer.max_epochs=1", *QUIET],
        tmp_path / "t",
        cache_dir,
    )
    results = json.loads((tmp_path / "t" / "results.json").read_text())
    assert np.isfinite(results["metrics"]["test/srcc"])
    assert results["config"]["model"]["_target_"] == "iqa_lab.models.mlms.MLMSNR"


# --- published tables (Tables 2–4) ----------------------------------------------------------------


def test_published_tables_carry_the_papers_numbers_and_their_cells_compose(tmp_path):
    from iqa_lab.evaluation.tables import load_spec, plan

    extra = [f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_root={tmp_path}"]
    table2 = load_spec("mlms_table2")
    assert table2["published"]["[4,4,4,4] / heads [6,6,6,6]"]["Distorted image ratio 70%"] == {
        "srcc": 0.848,
        "plcc": 0.879,
    }
    table3 = load_spec("mlms_table3")
    assert list(table3["rows"])[0] == "PSNR" and len(table3["rows"]) == 10
    assert table3["published"]["The proposed model (MLMS-IQA FR)"]["Distorted image ratio 60%"] == {
        "plcc": 0.947,
        "srcc": 0.9356,
    }
    table4 = load_spec("mlms_table4")
    assert table4["published"]["DBNs"]["Synthetic -> Artificial"] == 0.058
    for spec in (table2, table3, table4):
        assert "MLMS-IQA" in spec["source"]
        # every cell that runs composes; the databases are absent here
        assert {c.status for c in plan(spec, extra)} <= {"absent", "published-only"}


def test_the_mixed_configs_views_per_epoch_governs_every_member(make_cfg):
    import hydra

    cfg = make_cfg("train", ["data=synthetic_pair", "data.train_views_per_epoch=3"], tiny=False)
    mixed = hydra.utils.instantiate(cfg.data, protocol=cfg.protocol)
    assert [m.train_views_per_epoch for m in mixed.databases.values()] == [3, 3]
