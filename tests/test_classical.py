"""Classical measures (``model=classical``): calibration against the libraries that do the maths,
orientation, references, caching and the eval / table plumbing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import piq
import pytest
import torch
import yaml
from piq.functional import rgb2yiq

from iqa_lab import classical, progress
from iqa_lab.classical import brisque, fr, metrics, niqe, piq_variants
from iqa_lab.classical.cache import FeatureCache
from iqa_lab.data.datamodule import IQADataModule
from iqa_lab.data.distortions import distort
from iqa_lab.data.pristine import load_pristine
from iqa_lab.eval import evaluate
from iqa_lab.evaluation.tables import reproduce
from tests.conftest import TINY_DATA


def _reference(size: int = 96) -> np.ndarray:
    return load_pristine("astronaut")[40 : 40 + size, 150 : 150 + size]


# (reference, distorted) pairs made here, deterministically.
PAIRS = [("gaussian_blur", 2), ("white_noise", 4), ("jpeg", 3)]


def _piq_direct(metric: str, x: torch.Tensor, y: torch.Tensor) -> float:
    """piq's defaults (the ``*_piq`` variants), written as direct piq calls on [0, 1]."""
    luma_x, luma_y = rgb2yiq(x)[:, :1], rgb2yiq(y)[:, :1]
    if metric == "psnr_piq":
        return float(piq.psnr(x, y, data_range=1.0, convert_to_greyscale=True))
    if metric == "ssim_piq":
        return float(piq.ssim(luma_x, luma_y, data_range=1.0, downsample=True))
    if metric == "ms_ssim_piq":  # 96 px: the first four standard scales, renormalised weights
        weights = torch.tensor(fr.MS_SSIM_WEIGHTS[:4], dtype=torch.float64)
        return float(
            piq.multi_scale_ssim(
                luma_x, luma_y, data_range=1.0, scale_weights=weights / weights.sum()
            )
        )
    if metric == "fsim_piq":
        return float(piq.fsim(x, y, data_range=1.0, chromatic=False))
    if metric == "fsim":  # FSIMc on 0..255, float32
        x, y = (torch.round(t * 255).float() for t in (x, y))
        return float(piq.fsim(x, y, data_range=255.0, chromatic=True))
    if metric == "vif_p":
        return float(piq.vif_p(x, y, data_range=1.0))
    return float(piq.gmsd(x, y, data_range=1.0))


@pytest.mark.parametrize(
    "metric", ["psnr_piq", "ssim_piq", "ms_ssim_piq", "fsim", "fsim_piq", "vif_p", "gmsd_piq"]
)
def test_piq_computed_metrics_equal_direct_piq_calls(metric):
    reference = _reference()
    y = piq_variants.to_tensor(reference)
    for name, level in PAIRS:
        distorted = distort(reference, name, level, seed=7)
        expected = _piq_direct(metric, piq_variants.to_tensor(distorted), y)
        assert classical.score(metric, distorted, reference) == pytest.approx(expected, rel=1e-12)


def test_piq_tensors_are_contiguous_and_exact():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x = piq_variants.to_tensor(image)
    assert x.shape == (1, 3, 5, 7) and x.dtype == torch.float64
    assert x.is_contiguous()  # piq is several times slower on channels-last strides
    assert torch.equal(x[0, 1], torch.from_numpy(image[..., 1]).double() / 255)


def test_fr_scores_are_better_for_milder_distortion():
    reference = _reference(64)
    for name in classical.names():
        chosen = metrics.metric(name)
        if not chosen.full_reference or name == "vif":  # vifvec's pyramid needs larger images
            continue
        mild, heavy = (
            classical.score(name, distort(reference, "gaussian_blur", level, seed=0), reference)
            for level in (1, 5)
        )
        assert (mild > heavy) if chosen.higher_better else (mild < heavy), name


def test_ms_ssim_on_small_images_keeps_the_scales_that_fit():
    assert [fr.ms_ssim_levels(side) for side in (10, 22, 64, 175, 176, 384)] == [1, 2, 3, 4, 5, 5]
    reference = _reference(64)  # 3 scales, weights renormalised (msssim.m refuses it)
    distorted = distort(reference, "white_noise", 3, seed=0)
    full = fr.ms_ssim(np.tile(distorted, (3, 3, 1)), np.tile(reference, (3, 3, 1)))
    assert 0 < fr.ms_ssim(distorted, reference) < 1 and 0 < full < 1


def test_brisque_package_features_equal_the_package_features():
    import cv2
    from skimage.color import rgb2gray

    image = _reference(160)
    package = brisque._package()
    grey = rgb2gray(image)
    half = cv2.resize(grey, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    expected = [
        float(np.ravel(v)[0])
        for scale in (grey, half)
        for v in package.calculate_brisque_features(scale, kernel_size=7, sigma=7 / 6)
    ]
    ours = brisque.package_features(image)
    assert ours.shape == (brisque.FEATURES,)
    assert ours.tolist() == expected
    # The package's model: its own libsvm evaluation of the same features (the two paths sum
    # 770 kernel terms in different orders: equal to ~1e-12, not bit for bit).
    assert brisque.package_model().predict(ours[None])[0] == pytest.approx(
        package.calculate_image_quality_score(ours), rel=1e-9
    )


def test_package_model_is_the_shipped_libsvm_file():
    files = brisque.package_model_files()
    header = files["svm"].read_text().splitlines()[:6]
    assert header[:3] == ["svm_type epsilon_svr", "kernel_type rbf", "gamma 0.05"]
    assert brisque.package_model().low.shape == (36,)


@pytest.fixture(scope="module")
def degraded() -> dict[str, np.ndarray]:
    from skimage import filters, util

    photo = load_pristine("astronaut")
    return {
        "pristine": photo,
        "blurred": util.img_as_ubyte(filters.gaussian(photo, sigma=3, channel_axis=-1)),
        "noised": util.img_as_ubyte(util.random_noise(photo, var=0.02, rng=0)),
    }


def test_brisque_orders_pristine_above_blurred_and_noised(degraded):
    for name in ("brisque_live", "brisque_package"):
        scores = {k: classical.score(name, v) for k, v in degraded.items()}  # lower = better
        assert scores["pristine"] < 20 < 50 < min(scores["blurred"], scores["noised"]), name


def test_niqe_orders_pristine_above_blurred_and_noised(degraded):
    # Our fit on shipped photos other than the test photo, with 48 px patches to stay quick.
    photos = [load_pristine(name) for name in ("coffee", "chelsea", "rocket")]
    model = niqe.fit_pristine_model(photos, patch_size=48, sharpness=0.75)
    assert model["mu"].shape == (36,) and model["cov"].shape == (36, 36)
    ours = {k: niqe.score(v, model, 48) for k, v in degraded.items()}
    assert ours["pristine"] < min(ours["blurred"], ours["noised"])
    original = {k: classical.score("niqe_original", v) for k, v in degraded.items()}
    assert original["pristine"] < min(original["blurred"], original["noised"])


def test_niqe_refuses_images_smaller_than_its_patches():
    with pytest.raises(ValueError, match="model.niqe.patch_size"):
        niqe.score(_reference(64), niqe.original_model(), 96)


def test_niqe_of_a_flat_image_is_nan():
    flat = np.full((96, 96, 3), 128, dtype=np.uint8)
    assert np.isnan(niqe.score(flat, niqe.original_model(), 48))


def test_feature_cache_recomputes_only_changed_files(tmp_path):
    files = []
    for i in range(3):
        path = tmp_path / f"{i}.txt"
        path.write_text(str(i))
        files.append(path)
    calls = []

    def compute(path: Path) -> np.ndarray:
        calls.append(path.name)
        return np.array([float(path.read_text()), 1.0])

    first = FeatureCache(tmp_path / "cache", "test", tmp_path).features(files, compute)
    again = FeatureCache(tmp_path / "cache", "test", tmp_path).features(files, compute)
    assert calls == ["0.txt", "1.txt", "2.txt"] and np.array_equal(first, again)
    files[1].write_text("11")  # new content, new mtime/size: recomputed
    changed = FeatureCache(tmp_path / "cache", "test", tmp_path).features(files, compute)
    assert calls[3:] == ["1.txt"] and changed[1, 0] == 11.0


def test_fr_metrics_refuse_databases_without_references():
    records = pd.DataFrame({"image": ["a.jpg"], "split": ["test"]})
    datamodule = IQADataModule(name="biq2021", data_dir="/x", transforms={})
    with pytest.raises(ValueError, match="'biq2021' gives no reference images"):
        datamodule.reference_paths(records)


def _eval_cfg(make_cfg, tmp_path, metric: str, extra=()):
    cfg = make_cfg("eval", ["model=classical", f"model.metric={metric}", *extra])
    cfg.paths.output_dir = str(tmp_path / metric)
    return cfg


def test_eval_without_checkpoint_writes_the_usual_outputs(make_cfg, tmp_path):
    cfg = _eval_cfg(make_cfg, tmp_path, "ssim")
    metrics = evaluate(cfg)
    out = Path(cfg.paths.output_dir)
    results = json.loads((out / "results.json").read_text())
    predictions = pd.read_csv(out / "predictions.csv")
    assert results["checkpoint"] is None and results["config"]["model"]["metric"] == "ssim"
    test = predictions[predictions["split"] == "test"]
    assert len(test) == results["data"]["split_sizes"]["test"] > 0
    # Pristine crops are their own reference: SSIM exactly 1.
    assert np.allclose(test.loc[test["dist_type"] == "pristine", "prediction"], 1.0)
    assert metrics["test/srcc"] == results["metrics"]["test/srcc"] > 0.5
    assert (out / "report.md").is_file()
    assert len(list((Path(cfg.paths.log_dir) / "store").glob("*.json"))) == 1


def test_psnr_of_identical_pairs_ranks_first_and_finite(make_cfg, tmp_path):
    cfg = _eval_cfg(make_cfg, tmp_path, "psnr")
    metrics = evaluate(cfg)
    predictions = pd.read_csv(Path(cfg.paths.output_dir) / "predictions.csv")
    test = predictions[predictions["split"] == "test"]
    pristine = test.loc[test["dist_type"] == "pristine", "prediction"]
    bound = 10 * np.log10(255.0**2 * 64 * 64 * 3)  # one level of one value in a 64 px crop
    assert len(pristine) and np.allclose(pristine, bound)
    assert test["prediction"].max() == pytest.approx(bound) and np.isfinite(metrics["test/plcc"])
    assert np.isinf(classical.score("psnr", _reference(64), _reference(64)))  # as the original


def test_synthetic_references_are_the_pristine_crop(make_cfg):
    from iqa_lab.runs import seeded_datamodule

    cfg = make_cfg("eval", ["model=classical"])
    datamodule = seeded_datamodule(cfg, "test")
    refs = datamodule.reference_paths(datamodule.records)
    for image, ref in zip(datamodule.records["image"], refs):
        crop = Path(image).stem.split("_c0_")[0]
        assert ref == datamodule.data_dir / f"images/{crop}_c0_pristine_0.png"


def test_brisque_svr_picks_its_grid_on_validation_and_caches_features(make_cfg, tmp_path):
    grid = ["model.brisque_svr.C=[1,16]", "model.brisque_svr.gamma=[0.05,1.0]"]
    cfg = _eval_cfg(make_cfg, tmp_path, "brisque_svr", grid)
    metrics = evaluate(cfg)
    assert metrics["classical/svr_C"] in (1, 16) and metrics["classical/svr_gamma"] in (0.05, 1.0)
    assert np.isfinite(metrics["val/srcc"]) and np.isfinite(metrics["test/srcc"])
    assert metrics["classical/computed"] == 28  # every image of the tiny database, once
    again = _eval_cfg(make_cfg, tmp_path / "again", "brisque_live")
    assert evaluate(again)["classical/computed"] == 0  # the LIVE model reuses the cached features


def test_the_feature_pass_reports_images_done_rate_and_eta(make_cfg, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IQA_LAB_PROGRESS", "1")  # stderr is not a terminal here
    monkeypatch.setattr(progress, "DELAY", 0.0)
    cfg = _eval_cfg(make_cfg, tmp_path, "brisque_live", ["model.cache_dir=null"])
    evaluate(cfg)
    test = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())["data"]
    n = test["split_sizes"]["test"]
    lines = [line for line in capsys.readouterr().err.splitlines() if "features" in line]
    rate = r"[\d.]+ (images/s|s per image), elapsed \d+s"
    assert len(lines) == 2, lines  # the first image, then the final count
    assert re.fullmatch(
        rf"brisque_live: test features: 1/{n} images \(\d+%\), {rate}, ETA \d+s", lines[0]
    )
    assert re.fullmatch(rf"brisque_live: test features: {n}/{n} images \(100%\), {rate}", lines[1])


def test_a_large_feature_pass_runs_in_worker_processes(make_cfg, tmp_path, monkeypatch):
    from iqa_lab.models import classical as model_module

    monkeypatch.setattr(model_module, "PARALLEL_MIN_IMAGES", 2)
    serial = evaluate(_eval_cfg(make_cfg, tmp_path / "serial", "brisque_live", ["model.workers=1"]))
    cfg = _eval_cfg(
        make_cfg, tmp_path, "brisque_live", ["model.workers=2", f"model.cache_dir={tmp_path}"]
    )
    parallel = evaluate(cfg)
    assert parallel["classical/computed"] > 0  # computed here, by the workers
    assert parallel["test/srcc"] == serial["test/srcc"]


def test_eval_needs_a_checkpoint_or_a_model(make_cfg):
    with pytest.raises(ValueError, match="ckpt_path=<trained checkpoint> or model="):
        evaluate(make_cfg("eval", []))


@pytest.mark.slow
def test_classical_rows_in_a_table(tmp_path, cache_dir):
    spec = {
        "title": "classical",
        "source": "none",
        "repeats": 2,
        "protocol": ["protocol=content"],
        "metrics": ["test/srcc"],
        "base": ["model.optimizer.lr=1e-3"],  # a training option
        "rows": {
            "SSIM": {
                "overrides": ["model=classical", "model.metric=ssim"],
                "entry": "eval",
                "base": False,
                "columns": ["synthetic"],
            }
        },
        "columns": {
            "synthetic": ["data=synthetic"] + TINY_DATA,
            "elsewhere": ["data=synthetic"] + TINY_DATA,
        },
    }
    path = tmp_path / "classical.yaml"
    path.write_text(yaml.safe_dump(spec))
    extra = [f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={cache_dir}"]
    frame, launched = reproduce(str(path), extra, results_dir=tmp_path / "results")
    assert launched == 2  # one multirun of `python -m iqa_lab.eval -m ... protocol.repeat=0,1`
    by_column = frame.set_index("column")
    assert by_column.loc["synthetic", "status"] == "ok" and by_column.loc["synthetic", "n"] == 2
    assert by_column.loc["elsewhere", "status"] == "unavailable"


def test_demo_table_plans_its_classical_rows(tmp_path):
    from iqa_lab.evaluation.tables import load_spec, plan

    spec = load_spec("demo")
    spec["rows"] = {k: v for k, v in spec["rows"].items() if isinstance(v, dict)}
    spec["columns"] = {k: spec["columns"][k] for k in ("synthetic", "CLIVE")}
    cells = {(c.row, c.column): c for c in plan(spec, [f"paths.log_dir={tmp_path / 'logs'}"])}
    for row in (
        "BRISQUE (LIVE model)",
        "BRISQUE-SVR (retrained)",
        "NIQE (32 px patches)",
        "SSIM (full-reference)",
    ):
        cell = cells[(row, "synthetic")]
        assert cell.entry == "eval" and cell.status == "pending" and cell.missing == [0, 1, 2]
        assert not any(o.startswith("model.optimizer") for o in cell.overrides)
    assert cells[("SSIM (full-reference)", "CLIVE")].status == "unavailable"


def test_brisque_regressors_on_flat_images():
    flat = np.full((64, 64, 3), 128, dtype=np.uint8)
    # The original pads with zeros: a flat image's borders are edges, and its features finite.
    assert np.isfinite(classical.score("brisque_live", flat))
    package = brisque.package_features(flat)
    assert not np.isfinite(package).all()  # the package's fits cannot estimate a flat image
    assert np.isfinite(brisque.package_model().predict(package[None])).all()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 36))
    model, chosen = brisque.fit_svr(
        x, x[:, 0], x[:10], x[:10, 0], C=[1], gamma=[0.05], epsilon=0.01
    )
    assert np.isfinite(model.predict(np.where(np.isfinite(package), package, np.nan)[None])).all()
