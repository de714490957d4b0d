"""The real label files in ../shared/data parse with their exact row counts (skipped when
../shared is absent). These databases' images are not there: ``load_records`` only, no setup."""

from __future__ import annotations

import hydra
import pytest

from iqa_lab.data.datamodule import BOX_COLUMNS
from tests.conftest import SHARED

LABELS = SHARED / "data" / "labels"
BIQ2021 = SHARED / "data" / "BIQ2021"


def _records(make_cfg, name: str, data_dir, *overrides):
    if not data_dir.is_dir():
        pytest.skip(f"{data_dir} is absent (../shared is not checked out)")
    cfg = make_cfg(overrides=[f"data={name}", f"data.data_dir={data_dir}", *overrides], tiny=False)
    records = hydra.utils.instantiate(cfg.data, protocol=cfg.protocol).load_records()
    items = ["image"] + [c for c in BOX_COLUMNS if c in records]
    assert records["mos"].notna().all() and not records[items].duplicated().any()
    assert records["mos"].between(0, 1).all()
    return records


def test_koniq10k(make_cfg):
    records = _records(make_cfg, "koniq10k", LABELS / "KonIQ-10k")
    assert len(records) == 10_073
    assert records["set"].value_counts().to_dict() == {"train": 7058, "test": 2015, "val": 1000}
    assert records["mos_raw"].min() == pytest.approx(3.91176470588)
    assert records["mos_raw"].max() == pytest.approx(88.3888888889)
    assert records["mos_std"].between(0.29, 1.1).all()  # SD on the 1..5 rating scale
    assert records["image"].str.fullmatch(r"1024x768/\d+\.jpg").all()


def test_spaq(make_cfg, tmp_path):
    # The CSV export with its BOM; no images, so no resized copies are made.
    records = _records(make_cfg, "spaq", LABELS / "SPAQ", f"data.cache_dir={tmp_path}")
    assert len(records) == 11_125
    assert records["image"].iloc[0] == "TestImage/00001.jpg"
    assert (records["mos_raw"].min(), records["mos_raw"].max()) == (2.0, 96.0)
    assert not any(tmp_path.iterdir())


def test_flive_pictures_and_official_test_set(make_cfg):
    records = _records(make_cfg, "flive", LABELS / "FLIVE")
    assert len(records) == 39_810
    # labels640.csv names the official test pictures; its validation file is not in the folder.
    assert records["set"].value_counts().to_dict() == {"train": 37_983, "test": 1_827}
    assert records["image"].str.split("/").str[0].value_counts().to_dict() == {
        "voc_emotic_ava": 38_808,
        "blur_dataset": 999,
        "EE371R": 3,
    }


def test_flive_patches(make_cfg):
    # labels_patch.csv (the default) is not in the folder: the boxes of labels640.csv.
    records = _records(make_cfg, "flive_patches", LABELS / "FLIVE", "data.label_file=labels640.csv")
    assert len(records) == 3 * 1_827
    assert (records["image"].str.split("/").str[-1] == records["ref"]).all()
    assert records["ref"].nunique() == 1_827 and (records["content_db"] == "flive").all()
    pictures = _records(make_cfg, "flive", LABELS / "FLIVE")
    assert set(records["ref"]) <= set(pictures["ref"])  # one content id for picture and patches
    assert (records["bottom"] > records["top"]).all() and (records["right"] > records["left"]).all()


def test_agiqa3k(make_cfg):
    records = _records(make_cfg, "agiqa3k", LABELS / "AGIQA-3k")
    assert len(records) == 2_982
    assert records["mos_raw"].max() == pytest.approx(4.488741, abs=1e-6)
    assert records["mos_std"].notna().all()


def test_agiqa1k(make_cfg):
    records = _records(make_cfg, "agiqa1k", LABELS / "AGIQA-1k")
    assert len(records) == 1_080
    assert (records["mos_raw"].min(), records["mos_raw"].max()) == (pytest.approx(0.090909091), 5.0)


def test_biq2021_shared_rows(make_cfg):
    records = _records(make_cfg, "biq2021", BIQ2021)
    assert len(records) == 5_000 and (records["set"] == "train").all()
    assert "Images/ss02 (1014).jpg" in set(records["image"])  # reported as labelled
