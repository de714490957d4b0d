"""QualityNet (Aslam et al., Sci. Reports 2024): attention gates, the MAE + PLCC loss, the model's
variants and ablation configs, its learning-rate groups and plateau schedule, and a run."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException

from iqa_lab.errors import ConfigError
from iqa_lab.losses import get_loss
from iqa_lab.nn.attention import ChannelAttention, SpatialAttention
from tests.conftest import CONF_DIR
from tests.train_runs import bare_trainer

TINY_STREAMS = [
    "model.streams.stream1.name=mobilenetv3_small_050",
    "model.streams.stream1.pretrained=false",
    "model.streams.stream2.name=mobilenetv3_small_075",
    "model.streams.stream2.pretrained=false",
]
QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null"]
VARIANTS = sorted(p.stem for p in (Path(CONF_DIR) / "qualitynet_ablation").glob("*.yaml"))


# --- attention blocks (Eqs. 1–11) ----------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 7])
def test_spatial_attention_gates_positions_as_eqs_1_to_5(size):
    torch.manual_seed(0)
    block = SpatialAttention(kernel_size=3)
    x = torch.randn(2, 16, size, size)
    gate = block.gate(x)
    assert gate.shape == (2, 1, size, size)
    assert gate.min() > 0 and gate.max() < 1
    # Eq. 4 by hand: the 3x3 kernel over [channel mean, channel max], zero padded, then sigmoid
    pooled = np.stack([x.mean(1).numpy(), x.amax(1).numpy()], axis=1)
    padded = np.pad(pooled, ((0, 0), (0, 0), (1, 1), (1, 1)))
    w, b = block.conv.weight.detach().numpy()[0], block.conv.bias.item()
    logits = np.zeros((2, size, size))
    for i in range(size):
        for j in range(size):
            logits[:, i, j] = (padded[:, :, i : i + 3, j : j + 3] * w).sum(axis=(1, 2, 3)) + b
    np.testing.assert_allclose(gate[:, 0].detach().numpy(), 1 / (1 + np.exp(-logits)), rtol=1e-5)
    torch.testing.assert_close(block(x), x * gate)
    with pytest.raises(ValueError, match="odd"):
        SpatialAttention(kernel_size=4)


@pytest.mark.parametrize("size", [1, 5])
def test_channel_attention_gates_channels_as_eqs_6_to_11(size):
    torch.manual_seed(0)
    block = ChannelAttention(channels=16, reduction=4)
    assert (block.fc1.in_features, block.fc1.out_features, block.fc2.out_features) == (32, 4, 16)
    x = torch.randn(3, 16, size, size)
    gate = block.gate(x)
    assert gate.shape == (3, 16, 1, 1)
    assert gate.min() > 0 and gate.max() < 1
    concat = np.concatenate([x.mean((2, 3)).numpy(), x.amax((2, 3)).numpy()], axis=1)
    w1, b1 = block.fc1.weight.detach().numpy(), block.fc1.bias.detach().numpy()
    w2, b2 = block.fc2.weight.detach().numpy(), block.fc2.bias.detach().numpy()
    expected = 1 / (1 + np.exp(-(np.maximum(concat @ w1.T + b1, 0) @ w2.T + b2)))
    np.testing.assert_allclose(gate[:, :, 0, 0].detach().numpy(), expected, rtol=1e-5)
    torch.testing.assert_close(block(x), x * gate)


def test_channel_attention_pools_real_positions_only_under_a_pad_mask():
    torch.manual_seed(0)
    block = ChannelAttention(channels=8, reduction=2)
    x = torch.randn(1, 8, 4, 4)
    mask = torch.zeros(1, 16, 16, dtype=torch.bool)
    mask[:, :8, :8] = True  # the real image: the top-left 2x2 feature positions
    torch.testing.assert_close(block.gate(x, mask), block.gate(x[:, :, :2, :2]))
    full = torch.ones(1, 16, 16, dtype=torch.bool)
    torch.testing.assert_close(block.gate(x, full), block.gate(x))


# --- loss (Eqs. 38–40) ---------------------------------------------------------------------------


def test_mae_plcc_loss_equals_a_numpy_reference():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=10), rng.normal(size=10)
    expected = np.abs(pred - target).mean() + 10 * (1 - np.corrcoef(pred, target)[0, 1])
    loss = get_loss({"name": "mae+plcc", "mae_weight": 1.0, "plcc_weight": 10.0})
    got = loss(torch.tensor(pred), torch.tensor(target))
    assert got.item() == pytest.approx(expected, rel=1e-9)
    weighted = get_loss({"name": "mae+plcc", "mae_weight": 2.0, "plcc_weight": 0.5})
    expected = 2 * np.abs(pred - target).mean() + 0.5 * (1 - np.corrcoef(pred, target)[0, 1])
    assert weighted(torch.tensor(pred), torch.tensor(target)).item() == pytest.approx(expected)
    # the paper's weights are the defaults
    assert get_loss("mae+plcc")(torch.tensor(pred), torch.tensor(target)).item() == pytest.approx(
        got.item()
    )


@pytest.mark.parametrize(
    "pred,target",
    [([0.3], [0.7]), ([0.5, 0.5, 0.5, 0.5], [0.1, 0.4, 0.2, 0.9]), ([0.2, 0.6], [0.5, 0.5])],
    ids=["batch_of_one", "constant_predictions", "constant_targets"],
)
def test_mae_plcc_loss_is_finite_where_plcc_is_undefined(pred, target):
    pred = torch.tensor(pred, requires_grad=True)
    target = torch.tensor(target)
    loss = get_loss({"name": "mae+plcc", "plcc_weight": 10.0})(pred, target)
    loss.backward()
    # PLCC counts as 0 there: the loss is MAE + 10
    assert loss.item() == pytest.approx(F.l1_loss(pred, target).item() + 10.0)
    assert torch.isfinite(pred.grad).all()


def test_loss_settings_are_checked_by_name():
    with pytest.raises(ConfigError, match=r"'mae\+plcc' has no setting \['lambda2'\]"):
        get_loss({"name": "mae+plcc", "lambda2": 3})
    with pytest.raises(ConfigError, match="unknown loss 'mae'"):
        get_loss("mae")


# --- the model ---------------------------------------------------------------------------------


def _tiny_model(make_cfg, overrides=()):
    cfg = make_cfg("train", ["model=qualitynet", *TINY_STREAMS, *overrides])
    return hydra.utils.instantiate(cfg.model)


@pytest.mark.parametrize("attention", ["paper", "attention_before_pool"])
def test_both_variants_score_a_batch_and_respect_the_pad_mask(make_cfg, attention):
    torch.manual_seed(0)
    model = _tiny_model(make_cfg, [f"model.attention={attention}"]).eval()
    images = torch.rand(3, 3, 64, 64)
    full = torch.ones(3, 64, 64, dtype=torch.bool)
    half = full.clone()
    half[:, 32:] = False
    with torch.no_grad():
        plain = model(images)
        assert plain.shape == (3,) and torch.isfinite(plain).all()
        torch.testing.assert_close(model(images, mask=full), plain)
        assert not torch.allclose(model(images, mask=half), plain)
    # per stream: (B, C) attended features of the backbone's pooled width
    blocks = model.attention_blocks["stream1"]
    expected = model.stream1.num_features if attention == "paper" else model.stream1.map_channels
    assert blocks.channel.fc2.out_features == expected


def test_head_follows_eqs_25_to_34(make_cfg):
    model = _tiny_model(make_cfg)
    layers = [type(m).__name__ for m in model.head.net]
    assert layers == ["Linear", "ReLU", "BatchNorm1d", "Dropout"] * 3 + ["Linear"]
    linear = [m for m in model.head.net if isinstance(m, torch.nn.Linear)]
    fused = model.stream1.num_features + model.stream2.num_features
    assert [(m.in_features, m.out_features) for m in linear] == [
        (fused, 1024),
        (1024, 512),
        (512, 256),
        (256, 1),
    ]
    assert [m.p for m in model.head.net if isinstance(m, torch.nn.Dropout)] == [0.25, 0.25, 0.5]
    # a training batch of one image (an epoch's last) is scored, not refused by BatchNorm
    model.train()
    assert model(torch.rand(1, 3, 64, 64)).shape == (1,)


def test_both_streams_train_at_the_backbone_learning_rate(make_cfg):
    model = _tiny_model(make_cfg, ["model.head_lr_multiplier=10"])
    assert model.pretrained_modules == ("stream1", "stream2")
    optimizer = model.configure_optimizers()["optimizer"]
    streams, rest = optimizer.param_groups
    stream_ids = {id(p) for n in ("stream1", "stream2") for p in getattr(model, n).parameters()}
    assert {id(p) for p in streams["params"]} == stream_ids and streams["lr"] == 1e-4
    assert rest["lr"] == pytest.approx(1e-3)
    assert {id(p) for p in rest["params"]} == {id(p) for p in model.parameters()} - stream_ids


def test_the_plateau_schedule_reads_validation_loss(make_cfg):
    model = _tiny_model(make_cfg)
    configured = model.configure_optimizers()
    schedule = configured["lr_scheduler"]
    scheduler = schedule["scheduler"]
    assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert schedule["monitor"] == "val/loss" and scheduler.patience == 2
    assert scheduler.min_lrs == [1e-8] * len(configured["optimizer"].param_groups)
    model.hparams.scheduler = {k: v for k, v in model.hparams.scheduler.items() if k != "monitor"}
    with pytest.raises(ConfigError, match="model.scheduler.monitor=val/loss"):
        model.configure_optimizers()


# --- recipe and ablation configs (Fig. 5, Fig. 15) -----------------------------------------------


def test_the_recipe_is_the_papers(make_cfg):
    cfg = make_cfg("train", ["experiment=qualitynet"], tiny=False)
    assert cfg.data.batch_size == 10 and cfg.trainer.max_epochs == 100
    assert list(cfg.data.transforms.train.resize) == [224, 224]
    assert list(cfg.data.transforms.eval.resize) == [224, 224]
    assert cfg.model.optimizer.lr == 1e-4 and cfg.model.optimizer._target_ == "torch.optim.Adam"
    assert cfg.model.loss.plcc_weight == 10.0 and cfg.model.loss.mae_weight == 1.0
    assert cfg.protocol.val_fraction > 0 and cfg.callbacks.early_stopping is not None
    # Keras' default, as the plateau schedule: val/srcc stops before the MAE term sets the scale
    assert (cfg.callbacks.early_stopping.monitor, cfg.callbacks.early_stopping.mode) == (
        "val/loss",
        "min",
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_ablation_variant_composes_and_builds_its_model(make_cfg, variant):
    cfg = make_cfg(
        "train", ["experiment=qualitynet", f"qualitynet_ablation={variant}", *TINY_STREAMS]
    )
    assert list(cfg.tags) == ["qualitynet", "ablation", variant]
    model = hydra.utils.instantiate(cfg.model)
    streams = {"no_stream1": ["stream2"], "no_stream2": ["stream1"]}
    assert model.stream_names == streams.get(variant, ["stream1", "stream2"])
    assert list(model.pretrained_modules) == model.stream_names
    block = model.attention_blocks[model.stream_names[0]]
    no_spatial = variant in ("no_spatial", "no_attention")
    no_channel = variant in ("no_channel", "no_attention")
    assert (block.spatial is None, block.channel is None) == (no_spatial, no_channel)
    assert model.loss_fn.keywords["plcc_weight"] == (0.0 if variant == "no_plcc" else 10.0)
    assert model(torch.rand(2, 3, 64, 64)).shape == (2,)


def test_a_stream_outside_model_streams_is_refused(make_cfg):
    refused = (ConfigError, InstantiationException)  # hydra wraps the model's error
    with pytest.raises(refused, match=r"model.use_streams=\['stream3'\]: name one or more"):
        _tiny_model(make_cfg, ["model.use_streams=[stream3]"])
    with pytest.raises(refused, match="model.attention='before'"):
        _tiny_model(make_cfg, ["model.attention=before"])


def test_ablation_and_lambda_grid_are_multiruns_with_readable_folders(make_cfg):
    assert {"full", "no_stream1", "no_stream2", "no_spatial", "no_channel", "no_plcc"} <= set(
        VARIANTS
    )
    text = (Path(CONF_DIR) / "experiment" / "qualitynet.yaml").read_text()
    assert "subdir: ${hydra.job.num}_${hydra:runtime.choices.qualitynet_ablation}" in text
    grid = (Path(CONF_DIR) / "hparams_search" / "qualitynet_lambda.yaml").read_text()
    assert "model.loss.plcc_weight: 0,1,2,5,10,20" in grid
    assert "subdir: ${hydra.job.num}_plcc_weight_${model.loss.plcc_weight}" in grid
    cfg = make_cfg("train", ["experiment=qualitynet", "hparams_search=qualitynet_lambda"])
    assert cfg.optimized_metric == "val/srcc"


# --- training -------------------------------------------------------------------------------------


def test_a_tiny_qualitynet_learns_the_synthetic_set(make_cfg):
    """A few epochs on the tiny synthetic database: SRCC on the training images rises."""
    import lightning as L
    from torch.utils.data import DataLoader

    from iqa_lab.evaluation.metrics import srcc

    cfg = make_cfg(
        "train",
        [
            "model=qualitynet",
            "model.streams.stream1.name=tf_efficientnet_lite0",
            "model.use_streams=[stream1]",
            "model.head.widths=[64]",
            "model.head.dropouts=[0.0]",
            "model.optimizer.lr=1e-3",
            "model.scheduler=null",
            "protocol.train_fraction=0.75",
            "protocol.val_fraction=0.0",
        ],
    )
    L.seed_everything(0)
    datamodule = hydra.utils.instantiate(cfg.data, protocol=cfg.protocol)
    datamodule.setup("fit")
    model = hydra.utils.instantiate(cfg.model)

    def train_srcc() -> float:
        model.eval()
        with torch.no_grad():
            batches = list(DataLoader(datamodule.datasets["train"], batch_size=8))
            preds = torch.cat([model(b["image"]) for b in batches])
            mos = torch.cat([b["mos"] for b in batches])
        return srcc(preds.numpy(), mos.numpy())

    before = train_srcc()
    trainer = bare_trainer(max_epochs=8, limit_val_batches=0)
    model.train()
    trainer.fit(model, train_dataloaders=datamodule.train_dataloader())
    after = train_srcc()
    assert after > before + 0.2 and after > 0.6, (before, after)


def test_train_writes_the_run_report(make_cfg):
    from iqa_lab.train import train

    cfg = make_cfg(
        "train",
        ["model=qualitynet", *TINY_STREAMS, "trainer.max_epochs=1", *QUIET],
    )
    metrics = train(cfg)
    out = Path(cfg.paths.output_dir)
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"]["test/srcc"] == metrics["test/srcc"]
    assert results["config"]["model"]["_target_"] == "iqa_lab.models.qualitynet.QualityNet"
    for plot in ("scatter.png", "residuals.png", "distributions.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot


# --- published tables (Tables 2–6) ---------------------------------------------------------------


def test_published_tables_carry_the_papers_numbers_and_their_cells_compose(tmp_path):
    from iqa_lab.evaluation.tables import load_spec, plan

    expected = {
        2: ("TID2013", {"plcc": 0.92, "srcc": 0.93, "krcc": 0.77}),
        3: ("KonIQ-10K", {"plcc": 0.89, "srcc": 0.88, "krcc": 0.69}),
        4: ("LiveC", {"plcc": 0.86, "srcc": 0.84, "krcc": 0.68}),
        5: ("BIQ2021", {"plcc": 0.85, "srcc": 0.86, "krcc": 0.67}),
    }
    extra = [f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_root={tmp_path}"]
    for number, (column, proposed) in expected.items():
        spec = load_spec(f"qualitynet_table{number}")
        assert "QualityNet (Aslam et al., Sci. Reports 2024)" in spec["source"]
        assert len(spec["rows"]) == 16 and list(spec["rows"])[-1] == "Proposed Method"
        assert spec["rows"]["Proposed Method"] == ["experiment=qualitynet"]
        assert spec["published"]["Proposed Method"] == {column: proposed}
        assert spec["plcc_convention"]["default"]["metric"] == "plcc"
        cells = plan(spec, extra)
        # every cell that runs composes; the databases are absent here
        assert {c.status for c in cells} == {"absent", "published-only"}, number
    assert load_spec("qualitynet_table5")["published"]["GPR-BIQA"]["BIQ2021"]["srcc"] == 0.66
    evs = load_spec("qualitynet_table6")
    assert evs["metrics"] == ["test/evs", "test/r2"]
    assert evs["published"]["Proposed Method"] == {
        "TID2013": {"evs": -0.18},
        "KonIQ-10K": {"evs": -0.29},
        "LiveC": {"evs": -0.35},
        "BIQ2021": {"evs": -0.38},
    }
    assert evs["published"]["BRISQUE"]["KonIQ-10K"] == {"evs": -21.68}
    assert {c.status for c in plan(evs, extra)} == {"absent", "published-only"}


def test_frozen_streams_train_from_one_cache_per_stream_and_equal_pixels(make_cfg):
    """experiment=qualitynet_frozen: each frozen stream's pooled features are cached in its own
    store, the batch carries both, and the cached model scores exactly what it scores from
    pixels; a second run computes nothing."""
    from iqa_lab.runs import build_trainer, seeded_datamodule
    from iqa_lab.training.feature_cache import CachedFeatureDataset, FeatureCache

    overrides = [
        "experiment=qualitynet_frozen",
        "model.streams.stream1.pretrained=false",  # lite0: 7 stages, 8 = up to the pooling
        "model.streams.stream2.name=resnet18",
        "model.streams.stream2.pretrained=false",
        "model.streams.stream2.frozen_stages=5",  # 4 stages
        "trainer.max_epochs=2",
        "callbacks.early_stopping=null",
        "data.batch_size=4",
        "data.eval_batch_size=4",
        "data.transforms.train.resize=[64,64]",
        "data.transforms.eval.resize=[64,64]",
        *QUIET,
    ]
    cfg = make_cfg("train", overrides)
    datamodule = seeded_datamodule(cfg, "fit")
    model = hydra.utils.instantiate(cfg.model)
    trainer = build_trainer(cfg)
    cache = next(c for c in trainer.callbacks if isinstance(c, FeatureCache))
    pixels = datamodule.datasets["test"]
    head_before = model.head.net[0].weight.detach().clone()
    trainer.fit(model, datamodule=datamodule)
    assert not torch.equal(model.head.net[0].weight, head_before)

    cached = datamodule.datasets["test"]
    assert isinstance(cached, CachedFeatureDataset)
    item = cached[0]["image"]
    assert set(item) == {"stream1", "stream2"}
    assert item["stream1"].shape == (model.stream1.num_features,)
    assert item["stream2"].shape == (model.stream2.num_features,)
    # the two streams' stores are apart; val and test share one per stream
    assert len({id(f) for f in cached.features.values()}) == 2
    model.eval()
    batch = datamodule.collate([cached[i] for i in range(len(cached))])
    images = torch.stack([pixels[i]["image"] for i in range(len(pixels))])
    with torch.no_grad():
        from_cache = model.score(batch["image"])
        for stream in (model.stream1, model.stream2):
            stream.reads_prefix_features = False
        from_pixels = model.score(images)
    # float16 storage of features of order 1 (tests/test_feature_cache.py's tolerance)
    torch.testing.assert_close(from_cache, from_pixels, rtol=2e-3, atol=2e-3)

    second = make_cfg("train", overrides)
    datamodule = seeded_datamodule(second, "fit")
    trainer = build_trainer(second)
    cache = next(c for c in trainer.callbacks if isinstance(c, FeatureCache))
    trainer.fit(hydra.utils.instantiate(second.model), datamodule=datamodule)
    assert sum(cache.computed.values()) == 0


def test_the_baseline_experiment_is_qualitynets_recipe_with_one_backbone(make_cfg):
    cfg = make_cfg("train", ["experiment=qualitynet_baseline"], tiny=False)
    reference = make_cfg("train", ["experiment=qualitynet"], tiny=False)
    assert cfg.model._target_.endswith("BaselineIQA")
    for key in ("loss", "scheduler", "head_lr_multiplier"):
        assert cfg.model[key] == reference.model[key], key
    # AdamW without weight decay takes exactly Adam's steps
    assert cfg.model.optimizer._target_ == "torch.optim.AdamW"
    assert reference.model.optimizer._target_ == "torch.optim.Adam"
    for key in ("lr", "weight_decay"):
        assert cfg.model.optimizer[key] == reference.model.optimizer[key], key
    assert cfg.model.optimizer.weight_decay == 0
    assert cfg.data.transforms == reference.data.transforms
    assert cfg.data.batch_size == reference.data.batch_size == 10
    assert cfg.trainer.max_epochs == reference.trainer.max_epochs == 100
    assert cfg.model.backbone.name == reference.model.streams.stream1.name
