"""Related work I (seed abstracts): the Norm-in-Norm loss and its least-squares output map,
rating-distribution label models (on the real KonIQ-10k label file), the distribution head with
EMD / KL, MUSIQ's multi-scale tokens with padding masks, KonCept512, and each part trained
through the training entry point."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import stats
from torch.utils.data import DataLoader

from iqa_lab.data import rating_models
from iqa_lab.data.collate import IQACollate
from iqa_lab.data.databases.koniq10k import parse_koniq10k
from iqa_lab.data.datamodule import IQADataset
from iqa_lab.data.transforms import build_transform
from iqa_lab.losses import emd_loss, fits_linear_map, get_loss, kl_distribution_loss
from iqa_lab.models.base import IQAModule, load_iqa_module
from iqa_lab.models.musiq import MUSIQ, hash_cells
from iqa_lab.train import train
from tests.conftest import SHARED
from tests.train_runs import bare_trainer

KONIQ = SHARED / "data" / "labels" / "KonIQ-10k" / "koniq10k_distributions_sets.csv"
needs_koniq = pytest.mark.skipif(not KONIQ.is_file(), reason="../shared KonIQ-10k labels absent")
QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null", "logger=none"]
TINY_BACKBONE = ["model.backbone.name=mobilenetv3_small_050", "model.backbone.pretrained=false"]


# --- Norm-in-Norm ------------------------------------------------------------------------------


def test_norm_in_norm_value_by_hand():
    pred = torch.tensor([0.0, 1.0, 3.0])
    mos = torch.tensor([1.0, 2.0, 2.0])
    p_hat = (pred - pred.mean()) / (pred - pred.mean()).norm()
    y_hat = (mos - mos.mean()) / (mos - mos.mean()).norm()
    # p = 1, q = 2: ‖ŝ − ŷ‖_1 / (2 · N^(1 − 1/2))
    expected = (p_hat - y_hat).abs().sum() / (2 * 3**0.5)
    assert get_loss("norm_in_norm")(pred, mos).item() == pytest.approx(expected.item(), rel=1e-6)
    # p = q = 2 is (1 − PLCC) / 2
    loss = get_loss({"name": "norm_in_norm", "p": 2, "q": 2})(pred, mos)
    plcc = np.corrcoef(pred.numpy(), mos.numpy())[0, 1]
    assert loss.item() == pytest.approx((1 - plcc) / 2, rel=1e-5)
    assert fits_linear_map(get_loss({"name": "norm_in_norm", "p": 2})) and not fits_linear_map(
        get_loss("mse")
    )


def _grad(loss_fn, pred, mos):
    pred = pred.clone().requires_grad_(True)
    loss_fn(pred, mos).backward()
    return pred.grad


def test_norm_in_norm_gradient_direction_against_mse_on_a_toy_batch():
    mos = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9])
    nin = get_loss({"name": "norm_in_norm", "p": 2, "q": 2})
    # Outputs linear in MOS (any scale, offset): MSE still pulls them, Norm-in-Norm is at rest.
    linear = 3.0 * mos + 2.0
    assert _grad(F.mse_loss, linear, mos).norm() > 1.0
    assert _grad(nin, linear, mos).norm() < 1e-5
    # Two images swapped: both losses push them apart in the same direction (opposite signs on
    # the swapped pair, zero on the untouched middle one); Norm-in-Norm's gradient is blind to
    # a shift and a rescaling of the outputs (orthogonal to 1 and to the outputs).
    swapped = torch.tensor([0.1, 0.3, 0.5, 0.9, 0.7])
    g_mse, g_nin = _grad(F.mse_loss, swapped, mos), _grad(nin, swapped, mos)
    assert torch.equal(torch.sign(g_mse[3:]), torch.tensor([1.0, -1.0]))
    assert torch.equal(torch.sign(g_nin[3:]), torch.tensor([1.0, -1.0]))
    assert abs(g_mse[2]) < 1e-7 and abs(g_nin[2]) < 1e-7
    assert F.cosine_similarity(g_mse, g_nin, dim=0) > 0.95  # 0.975
    assert abs(g_nin.sum()) < 1e-6 and abs(g_nin @ (swapped - swapped.mean())) < 1e-6
    # On outputs at a 10x smaller scale MSE's gradient is mostly the missing scale, not the swap.
    small = swapped / 10
    g_small = _grad(F.mse_loss, small, mos)
    assert F.cosine_similarity(g_small, _grad(nin, small, mos), dim=0) < 0.5


class LinearScorer(IQAModule):
    """A linear score of 4 numbers per image (the tests' own tiny model)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, image, *, reference=None, mask=None, heads=None):
        return self.linear(image).squeeze(-1)


def _vector_loader(n: int, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    mos = 0.5 + 0.1 * (x @ torch.tensor([1.0, -0.5, 0.2, 0.0])) + 0.01 * torch.randn(n)
    items = [{"image": x[i], "mos": mos[i], "index": torch.tensor(i)} for i in range(n)]
    return DataLoader(items, batch_size=8)


def test_norm_in_norm_fits_a_least_squares_map_on_validation_kept_in_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = LinearScorer(optimizer={"_target_": "torch.optim.SGD", "lr": 0.5}, loss="norm_in_norm")
    train_loader, val_loader = _vector_loader(64, 1), _vector_loader(32, 2)
    trainer = bare_trainer(max_epochs=3, num_sanity_val_steps=0)
    trainer.fit(model, train_loader, val_loader)
    model.eval()
    x = torch.stack([b["image"] for b in val_loader.dataset])
    mos = torch.stack([b["mos"] for b in val_loader.dataset])
    with torch.no_grad():
        raw = model(x).numpy()
    slope, intercept = np.polyfit(raw, mos.numpy(), 1)
    assert model.output_map.scale.item() == pytest.approx(slope, rel=1e-4)
    assert model.output_map.shift.item() == pytest.approx(intercept, rel=1e-4, abs=1e-6)
    assert abs(slope - 1) > 0.05  # a real map, not the identity
    # test and predict scores are mapped: on MOS's scale
    trainer.test(model, val_loader, verbose=False)
    np.testing.assert_allclose(
        model.test_predictions["prediction"], slope * raw + intercept, rtol=1e-4, atol=1e-5
    )
    ckpt = tmp_path / "nin.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = load_iqa_module(str(ckpt))
    assert loaded.output_map.scale.item() == pytest.approx(slope, rel=1e-4)


# --- rating distributions ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def koniq():
    table = pd.read_csv(KONIQ)
    hist = table[[f"c{k}" for k in range(1, 6)]].to_numpy()
    mean, var = rating_models.empirical_moments(hist, table["c_total"].to_numpy())
    return table, hist, mean, var


@needs_koniq
@pytest.mark.parametrize("name", ["quantised_normal", "quantised_logistic"])
def test_quantised_latent_models_reproduce_koniq_mos_and_sd(koniq, name):
    table, hist, mean, var = koniq
    pmf = rating_models.label_model(name).from_moments(mean, var)
    assert pmf.shape == (10073, 5) and np.allclose(pmf.sum(1), 1)
    fit_mean, fit_var = rating_models.moments(pmf)
    assert np.abs(fit_mean - mean).max() < 1e-3
    # the file's SD (sample SD of the ratings) back from the fitted distribution
    assert np.quantile(np.abs(np.sqrt(fit_var) - table["SD"]), 0.999) < 1e-3
    # the file's 0..100 MOS comes from per-worker z-scores: close to, not a function of, the mean
    assert stats.spearmanr(fit_mean, table["MOS"])[0] > 0.99  # 0.992
    # goodness of fit: total variation to the empirical histogram
    tv = 0.5 * np.abs(pmf - hist).sum(1)
    assert np.median(tv) < 0.03 and np.mean(tv) < 0.035


@needs_koniq
def test_beta_binomial_keeps_the_mean_and_cannot_reach_koniqs_small_variances(koniq):
    table, hist, mean, var = koniq
    model = rating_models.label_model("beta_binomial")
    pmf = model.from_moments(mean, var)
    fit_mean, fit_var = rating_models.moments(pmf)
    assert np.abs(fit_mean - mean).max() < 1e-6
    p = (mean - 1) / 4
    over = var > 4 * p * (1 - p)  # over-dispersed vs the binomial: representable
    assert np.abs(np.sqrt(fit_var[over]) - np.sqrt(var[over])).max() < 1e-6
    # KonIQ-10k's ratings are under-dispersed: almost none is a beta-binomial
    assert over.sum() < 50
    tv = 0.5 * np.abs(pmf - hist).sum(1)
    normal = rating_models.label_model("quantised_normal").from_moments(mean, var)
    assert np.median(tv) > 5 * np.median(0.5 * np.abs(normal - hist).sum(1))


@needs_koniq
def test_koniq_histograms_reach_the_batch(tmp_path):
    records = parse_koniq10k(
        KONIQ.parent, {KONIQ.name: "MOS"}, "1024x768", mos_range=(0, 100), lower_better=False
    )
    table = pd.read_csv(KONIQ)
    hist = records[[f"hist_{k}" for k in range(1, 6)]].to_numpy()
    np.testing.assert_allclose(hist, table[[f"c{k}" for k in range(1, 6)]].to_numpy())
    # two rows as a dataset of tiny images: each item and the batch carry the histogram
    rows = records.head(2).copy()
    for i, name in enumerate(("a.png", "b.png")):
        rows.loc[rows.index[i], "image"] = name
        Image.fromarray(np.full((8, 8, 3), 100 * i, np.uint8)).save(tmp_path / name)
    dataset = IQADataset(rows, tmp_path, build_transform("test", crop_size=None))
    batch = IQACollate()([dataset[0], dataset[1]])
    torch.testing.assert_close(batch["histogram"], torch.tensor(hist[:2], dtype=torch.float32))


def test_emd_and_kl_by_hand():
    low, high = torch.tensor([[1.0, 0, 0, 0, 0]]), torch.tensor([[0, 0, 0, 0, 1.0]])
    logit = lambda p: torch.log(p.clamp_min(1e-12))  # noqa: E731
    assert emd_loss(logit(low), low).item() == pytest.approx(0, abs=1e-6)
    # CDF differences (1, 1, 1, 1, 0): sqrt(4 / 5)
    assert emd_loss(logit(low), high).item() == pytest.approx((4 / 5) ** 0.5, rel=1e-5)
    p = torch.tensor([[0.1, 0.2, 0.4, 0.2, 0.1]])
    t = torch.tensor([[0.0, 0.1, 0.3, 0.5, 0.1]])
    expected = sum(a * np.log(a / b) for a, b in zip(t[0].tolist(), p[0].tolist()) if a > 0)
    assert kl_distribution_loss(p.log(), t).item() == pytest.approx(expected, rel=1e-5)


def test_distribution_model_targets_histograms_or_mos_and_derives_mos_and_sd(make_cfg):
    cfg = make_cfg("train", ["model=distribution", *TINY_BACKBONE])
    model = hydra.utils.instantiate(cfg.model)
    mos = torch.tensor([0.2, 0.5, 0.9])
    made = model.target_distribution({"mos": mos})
    mean, var = rating_models.moments(made.numpy())
    np.testing.assert_allclose(mean, 1 + 4 * mos.numpy(), atol=1e-3)
    np.testing.assert_allclose(np.sqrt(var), 0.57, atol=2e-3)  # model.assumed_sd
    hist = torch.tensor([[0.0, 0.1, 0.2, 0.3, 0.4]])
    assert torch.equal(model.target_distribution({"mos": mos[:1], "histogram": hist}), hist)
    logits = torch.tensor([[0.0, 1.0, 2.0, 1.0, 3.0]])
    probs = logits.softmax(-1)[0].numpy()
    m, s = model.mean_and_sd(logits)
    assert m.item() == pytest.approx(probs @ np.arange(1, 6), rel=1e-6)
    assert s.item() == pytest.approx(np.sqrt(probs @ np.arange(1, 6) ** 2 - m.item() ** 2), 1e-5)
    assert model.to_score(logits).item() == pytest.approx((m.item() - 1) / 4, rel=1e-6)


# --- MUSIQ -------------------------------------------------------------------------------------


def test_hash_spatial_cells():
    # a 3 x 5 patch grid on a 10 x 10 hash grid: i → ⌊10 i / 3⌋, j → ⌊10 j / 5⌋ = 2 j
    cells = hash_cells(3, 5, 10).view(3, 5)
    assert cells[:, 0].tolist() == [0, 30, 60] and cells[0].tolist() == [0, 2, 4, 6, 8]
    assert hash_cells(20, 20, 10).view(20, 20)[19, 19].item() == 99


def _musiq(**overrides) -> MUSIQ:
    torch.manual_seed(0)
    settings = dict(
        patch_size=16,
        scales=[24, 40],
        hash_grid=4,
        encoder={"dim": 24, "depth": 2, "heads": 2},
        optimizer={"_target_": "torch.optim.AdamW", "lr": 1e-3},
    )
    model = MUSIQ(**{**settings, **overrides}).eval()
    torch.nn.init.normal_(model.head.weight)  # a zero head scores every image alike
    return model


def test_musiq_tokens_per_scale_and_a_padded_batch_scores_each_image_as_alone():
    model = _musiq()
    small, large = torch.rand(3, 48, 64), torch.rand(3, 80, 40)
    tokens, real = model.embed(small[None] * 2 - 1)
    # native 48x64 → 3x4 patches; longest 24 → 18x24 → 2x2; longest 40 → 30x40 → 2x3
    assert tokens.shape == (1, 12 + 4 + 6, 24) and real.all()
    batch = torch.zeros(2, 3, 80, 64)
    batch[0, :, :48, :64], batch[1, :, :80, :40] = small, large
    mask = torch.zeros(2, 80, 64, dtype=torch.bool)
    mask[0, :48, :64], mask[1, :80, :40] = True, True
    with torch.no_grad():
        together = model(batch, mask=mask)
        alone = torch.stack([model(small[None])[0], model(large[None])[0]])
        unmasked = model(batch)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(unmasked[0], alone[0], atol=1e-3)  # the pad changes it unmasked
    # the scale embedding tells scales apart: zeroing it changes the score
    with torch.no_grad():
        model.embed.scale.zero_()
        assert not torch.allclose(model(small[None]), alone[:1], atol=1e-4)


# --- KonCept512 --------------------------------------------------------------------------------


def test_koncept512_is_inception_resnet_v2_with_the_authors_head(make_cfg):
    cfg = make_cfg("train", ["model=koncept512"])
    assert list(cfg.data.transforms.eval.resize) == [384, 512]
    model = hydra.utils.instantiate(cfg.model).eval()
    assert model.backbone.name == "inception_resnet_v2" and model.backbone.num_features == 1536
    layers = [type(m).__name__ for m in model.head.net]
    assert layers == ["Linear", "ReLU", "BatchNorm1d", "Dropout"] * 3 + ["Linear"]
    widths = [m.out_features for m in model.head.net if isinstance(m, torch.nn.Linear)]
    drops = [m.p for m in model.head.net if isinstance(m, torch.nn.Dropout)]
    assert widths == [2048, 1024, 256, 1] and drops == [0.25, 0.25, 0.5]
    with torch.no_grad():
        assert model(torch.rand(1, 3, 96, 128)).shape == (1,)


# --- each part through the training entry point -------------------------------------------------

PARTS = {
    "musiq": ["model=musiq", "data.collate=pad", "model.scales=[32]", "model.encoder.depth=1"],
    "koncept512": [
        "model=koncept512",
        "data.transforms.train.resize=[80,80]",
        "data.transforms.eval.resize=[80,80]",
    ],
    "norm_in_norm": ["model.loss=norm_in_norm", *TINY_BACKBONE],
    "distribution": ["model=distribution", *TINY_BACKBONE],
}


@pytest.mark.parametrize(
    "part",
    [  # InceptionResNetV2 (55 M parameters) trains for over a minute even at 80 px on a CPU
        pytest.param(p, marks=pytest.mark.slow) if p == "koncept512" else p for p in sorted(PARTS)
    ],
)
def test_each_part_trains_through_the_entry_point(make_cfg, part):
    cfg = make_cfg("train", ["debug=limit", "trainer.max_epochs=1", *QUIET, *PARTS[part]])
    metrics = train(cfg)
    assert (
        np.isfinite(metrics["test/rmse"]) and Path(cfg.paths.output_dir, "results.json").is_file()
    )


@needs_koniq
def test_koniq_histograms_reach_the_batches_of_the_datamodule(make_cfg, tmp_path):
    """The real label file's first 40 rows, with tiny JPEGs under their names: the DataModule's
    setup (screening, near-duplicate pass, split) keeps the histograms, and every batch has them."""
    table = pd.read_csv(KONIQ).head(40)
    data_dir = tmp_path / "koniq10k"
    (data_dir / "1024x768").mkdir(parents=True)
    table.to_csv(data_dir / KONIQ.name, index=False)
    rng = np.random.default_rng(0)
    for name in table["image_name"]:
        pixels = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(data_dir / "1024x768" / name, quality=95)
    cfg = make_cfg("train", ["data=koniq10k", f"data.data_dir={data_dir}"], tiny=False)
    datamodule = hydra.utils.instantiate(cfg.data, protocol=cfg.protocol)
    datamodule.prepare_data()
    datamodule.setup("fit")
    by_name = table.set_index("image_name")[[f"c{k}" for k in range(1, 6)]]
    batch = next(iter(datamodule.train_dataloader()))
    names = [Path(datamodule.records.loc[int(i), "image"]).name for i in batch["index"]]
    np.testing.assert_allclose(batch["histogram"].numpy(), by_name.loc[names].to_numpy(), 1e-6)


def test_the_related_work_table_composes_every_cell(tmp_path):
    from iqa_lab.evaluation.tables import load_spec, plan

    spec = load_spec("related_work_1")
    cells = plan(spec, [f"paths.data_root={tmp_path}", f"paths.log_dir={tmp_path / 'logs'}"])
    status = {(c.row, c.column): c.status for c in cells}
    assert not [c.detail for c in cells if "does not compose" in c.detail]
    musiq = "MUSIQ (random init, CPU-sized)"
    assert status[(musiq, "Synthetic (small)")] == "pending"
    assert status[(musiq, "BIQ2021")] == "unavailable"  # not run there: the CPU budget
    assert status[(musiq, "KonIQ-10k")] == "absent"  # no images here; published numbers shown
    assert spec["published"][musiq]["KonIQ-10k"] == {"srcc": 0.916, "plcc": 0.928}
