"""The research scripts of issue 15 item 3: frozen multi-level features and the regressor study."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tests.conftest import SHARED
from tests.planted import noise_images

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments" / "scripts"))
import biq2021_fast_exploration as study  # noqa: E402
import frozen_features as ff  # noqa: E402


def test_stage_pooler_concatenates_every_stage_and_the_head():
    pooler = ff.StagePooler("tf_efficientnet_lite0")
    assert pooler.stage_widths() == [16, 24, 40, 80, 112, 192, 320, 1280]
    features = pooler(torch.rand(2, 3, 64, 64))
    assert features.shape == (2, 2 * 2064)


def _jpegs(folder: Path, count: int) -> list[Path]:
    return noise_images(folder, [f"img ({i}).jpg" for i in range(count)], 40, 48)


def test_extract_caches_and_the_key_follows_the_images(tmp_path, monkeypatch):
    monkeypatch.setenv("IQA_LAB_CACHE", str(tmp_path / "cache"))
    paths = _jpegs(tmp_path, 3)
    first = ff.extract(paths, "tf_efficientnet_lite0", "resize64", batch=2)
    assert first.shape == (3, 4128) and first.dtype == np.float32
    # A second call reads the cache: no backbone is built.
    monkeypatch.setattr(ff, "StagePooler", None)
    np.testing.assert_array_equal(ff.extract(paths, "tf_efficientnet_lite0", "resize64"), first)
    key = ff.cache_file("tf_efficientnet_lite0", "resize64", paths)
    assert key != ff.cache_file("tf_efficientnet_lite0", "resize64_flip", paths)
    assert key != ff.cache_file("tf_efficientnet_lite2", "resize64", paths)
    assert key != ff.cache_file("tf_efficientnet_lite0", "resize64", paths[::-1])
    Image.new("RGB", (30, 30)).save(paths[0])
    assert key != ff.cache_file("tf_efficientnet_lite0", "resize64", paths)


def test_flipped_view_mirrors_the_image(tmp_path):
    (path,) = _jpegs(tmp_path, 1)
    plain, flipped = ff.load_view(path, 32, False), ff.load_view(path, 32, True)
    torch.testing.assert_close(flipped, plain.flip(-1))
    with pytest.raises(SystemExit, match="resize<size>"):
        ff.parse_view("crop384")


def test_resolve_case_finds_a_file_differing_in_case_only(tmp_path):
    (tmp_path / "ss02 (1014).JPG").write_bytes(b"x")
    assert ff.resolve_case(tmp_path / "ss02 (1014).jpg").name == "ss02 (1014).JPG"
    with pytest.raises(FileNotFoundError, match="nor one differing only in case"):
        ff.resolve_case(tmp_path / "missing.jpg")


def test_feature_set_names_parse_to_backbones_and_views():
    assert study.feature_blocks("lite0@384f/s5-8+lite2@224") == [
        study.FeatureBlock("tf_efficientnet_lite0", ("resize384", "resize384_flip"), (5, 8)),
        study.FeatureBlock("tf_efficientnet_lite2", ("resize224",)),
    ]
    with pytest.raises(SystemExit, match="lite0@384f/s5-8\\+lite2@224"):
        study.feature_blocks("lite0-384")


def test_stage_columns_pick_mean_and_std_of_the_chosen_stages():
    # lite0 widths 16, 24, 40, 80, 112, 192, 320, 1280; each stage holds 2x (mean, std).
    assert study.stage_columns("tf_efficientnet_lite0", (1, 1)) == slice(0, 32)
    assert study.stage_columns("tf_efficientnet_lite0", (5, 8)) == slice(320, 4128)


def _linear_problem(n=400, dims=20, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dims))
    y = x @ rng.normal(size=dims) + 0.3 * rng.normal(size=n)
    split = np.array(["train"] * 240 + ["val"] * 60 + ["test"] * 100)
    return x, y, split


def test_ridge_learns_and_selection_never_reads_the_test_labels():
    x, y, split = _linear_problem()
    result = study.run_repeat(x, y, split, study.REGRESSORS["ridge"], power=False)
    assert result["srcc"] > 0.95 and result["plcc"] > 0.95
    assert result["params"]["alpha"] == 100.0  # the smallest penalty: the line is nearly exact
    shuffled = y.copy()
    shuffled[split == "test"] = np.random.default_rng(1).permutation(y[split == "test"])
    again = study.run_repeat(x, shuffled, split, study.REGRESSORS["ridge"], power=False)
    assert again["params"] == result["params"] and again["val_srcc"] == result["val_srcc"]
    assert again["srcc"] < 0.5


@pytest.mark.skipif(not (SHARED / "data" / "BIQ2021").is_dir(), reason="no ../shared/data")
def test_biq2021_records_resolve_every_shared_image():
    records = ff.biq2021_records(SHARED / "data" / "BIQ2021")
    assert len(records) == 5000
    assert records["path"].map(Path.is_file).all()
    assert (records["path"].map(lambda p: p.name) == "ss02 (1014).JPG").sum() == 1
    assert isinstance(records, pd.DataFrame) and records["mos"].between(0, 1).all()


def test_learning_curve_subsample_keeps_the_test_rows_and_a_fraction_of_the_rest():
    split = np.array(["train"] * 240 + ["val"] * 60 + ["test"] * 100)
    half = study.subsample(split, 0.5, seed=0)
    assert (half == "train").sum() == 120 and (half == "val").sum() == 30
    assert (half == "unused").sum() == 150
    np.testing.assert_array_equal(half == "test", split == "test")
    np.testing.assert_array_equal(study.subsample(split, 0.5, seed=0), half)  # seeded
    assert study.subsample(split, 1.0, seed=0) is split
