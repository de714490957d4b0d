"""Protocols (official / random / content / cross / leave_one_out, selection=test) and the leakage
guard, on generated records and on the real synthetic database."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from iqa_lab.data.datamodule import IQADataModule
from iqa_lab.data.leakage import LeakageError, check_leakage, find_leaks
from iqa_lab.data.protocols import Protocol, assign_splits
from iqa_lab.data.records import make_records
from iqa_lab.train import train


def _records(n_refs=10, per_ref=5, db="db", sets=None) -> pd.DataFrame:
    rows = [
        {"image": f"{db}_{r}_{i}.png", "mos_raw": float(i), "ref": f"R{r}"}
        for r in range(n_refs)
        for i in range(per_ref)
    ]
    frame = pd.DataFrame(rows)
    if sets is not None:
        frame["set"] = sets
    return make_records(frame, db=db, mos_range=(0, 5))


def _sides(split: pd.DataFrame, key="ref") -> dict[str, set]:
    return {s: set(split.loc[split["split"] == s, key]) for s in ("train", "val", "test")}


@pytest.mark.parametrize("name", ["random", "content"])
def test_random_and_content_keep_references_together(name):
    split = assign_splits(_records(), Protocol(name=name, seed=3))
    sides = _sides(split)
    assert not (
        sides["train"] & sides["test"]
        or sides["train"] & sides["val"]
        or sides["val"] & sides["test"]
    )
    assert len(sides["test"]) == 2 and len(sides["val"]) == 2  # 80/20, then 20% of training


def test_repeats_draw_different_splits_and_the_same_split_again():
    records = _records(n_refs=40, per_ref=1)
    first = assign_splits(records, Protocol(name="random", repeat=0))["split"]
    assert first.equals(assign_splits(records, Protocol(name="random", repeat=0))["split"])
    assert not first.equals(assign_splits(records, Protocol(name="random", repeat=1))["split"])


def test_content_refuses_a_database_without_references():
    with pytest.raises(ValueError, match="no references"):
        assign_splits(_records(n_refs=20, per_ref=1), Protocol(name="content"))


def test_official_uses_the_published_sets_and_carves_validation_from_training():
    sets = ["training"] * 30 + ["test"] * 20
    split = assign_splits(_records(n_refs=50, per_ref=1, sets=sets), Protocol(name="official"))
    assert (split["split"].iloc[30:] == "test").all()
    assert set(split["split"].iloc[:30]) == {"train", "val"}
    assert (split["split"] == "val").sum() == 6
    with_val = ["train"] * 30 + ["validation"] * 5 + ["test"] * 15
    split = assign_splits(_records(n_refs=50, per_ref=1, sets=with_val), Protocol(name="official"))
    assert list(split["split"].value_counts().sort_index()) == [15, 30, 5]
    with pytest.raises(ValueError, match="no official split"):
        assign_splits(_records(), Protocol(name="official"))


def test_cross_and_leave_one_out_split_by_database():
    records = pd.concat([_records(db="a"), _records(db="b"), _records(db="c")], ignore_index=True)
    cross = assign_splits(records, Protocol(name="cross", train_dbs=["a"], test_dbs=["b"]))
    assert set(cross.loc[cross["split"] == "test", "db"]) == {"b"}
    assert set(cross.loc[cross["split"] != "test", "db"]) == {"a"}
    assert "c" not in set(cross["db"])  # on neither side: dropped
    loo = assign_splits(records, Protocol(name="leave_one_out", held_out="c"))
    assert set(loo.loc[loo["split"] == "test", "db"]) == {"c"}
    assert set(loo.loc[loo["split"] == "train", "db"]) == {"a", "b"}
    with pytest.raises(ValueError, match="not in the data"):
        assign_splits(records, Protocol(name="leave_one_out", held_out="koniq10k"))
    with pytest.raises(ValueError, match="train_dbs"):
        Protocol(name="cross", train_dbs=["a"])


def test_selection_test_holds_back_no_validation_and_is_paper_parity():
    protocol = Protocol(name="random", selection="test")
    split = assign_splits(_records(n_refs=20, per_ref=1), protocol)
    assert protocol.paper_parity and "val" not in set(split["split"])


# --- the leakage guard -----------------------------------------------------------------------


def _write_png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def test_leakage_finds_identical_pixels_under_different_names_and_formats(tmp_path):
    for i in range(4):
        _write_png(tmp_path / f"img{i}.png", 40 * i)
    # img0 again, as a BMP with another name: same pixels, different file.
    Image.open(tmp_path / "img0.png").save(tmp_path / "copy_of_0.bmp")
    records = pd.DataFrame(
        {
            "image": ["img0.png", "img1.png", "img2.png", "img3.png", "copy_of_0.bmp"],
            "ref": ["a", "b", "c", "d", "e"],
            "split": ["train", "train", "val", "test", "test"],
        }
    )
    paths = records["image"].map(lambda i: tmp_path / i)
    leaks = find_leaks(records, paths, cache_dir=tmp_path / "cache")
    assert set(leaks["pixels"]["image"]) == {"img0.png", "copy_of_0.bmp"}
    assert leaks["file"].empty and leaks["ref"].empty
    with pytest.raises(LeakageError, match="copy_of_0.bmp") as err:
        check_leakage(records, paths, cache_dir=tmp_path / "cache")
    assert "identical images" in str(err.value)
    assert (tmp_path / "cache" / "pixel_hashes.csv").is_file()  # the second look is cached


def test_leakage_finds_shared_references_and_linked_files(tmp_path):
    _write_png(tmp_path / "x.png", 10)
    _write_png(tmp_path / "y.png", 200)
    (tmp_path / "link.png").symlink_to(tmp_path / "x.png")
    records = pd.DataFrame(
        {
            "image": ["x.png", "link.png", "y.png"],
            "ref": ["p", "q", "p"],
            "split": ["train", "test", "test"],
        }
    )
    leaks = find_leaks(records, records["image"].map(lambda i: tmp_path / i), pixels=False)
    assert set(leaks["file"]["image"]) == {"x.png", "link.png"}
    assert set(leaks["ref"]["image"]) == {"x.png", "y.png"}


class PlantedDuplicateDataModule(IQADataModule):
    """A database whose label file lists one photo twice under different names and refs."""

    def load_records(self) -> pd.DataFrame:
        frame = pd.read_csv(self.data_dir / "labels.csv")
        return make_records(frame, db=self.name, mos_range=(0, 1))


def test_a_run_refuses_a_planted_duplicate(make_cfg, tmp_path):
    """Copy the synthetic database, plant one image again under a new name and reference, and see
    training refuse before any fit."""
    cfg = make_cfg("train")
    source = hydra.utils.instantiate(cfg.data, protocol=cfg.protocol)
    source.setup()
    records = source.records
    data_dir = tmp_path / "planted"
    shutil.copytree(source.data_dir / "images", data_dir / "images")
    test_image = records.loc[records["split"] == "test", "image"].iloc[0]
    shutil.copy(data_dir / test_image, data_dir / "images" / "innocent_name.png")
    frame = records[["image", "mos_raw", "ref"]].copy()
    frame["mos_raw"] = records["mos"]
    # Its own reference: every content-based split puts it beside its twin only by chance. Its
    # twin's MOS: a different one would make the pair a label problem, refused before the split.
    twin_mos = frame.loc[frame["image"] == test_image, "mos_raw"].iloc[0]
    frame.loc[len(frame)] = {
        "image": "images/innocent_name.png",
        "mos_raw": twin_mos,
        "ref": "planted",
    }
    frame.to_csv(data_dir / "labels.csv", index=False)
    # Find a split seed that separates the twins (the planted ref is drawn independently).
    for seed in range(50):
        split = assign_splits(
            make_records(frame, db="planted", mos_range=(0, 1)),
            Protocol(name="content", seed=seed, train_fraction=0.5, val_fraction=0.5),
        )
        sides = split.set_index("image")["split"]
        if sides[test_image] != sides["images/innocent_name.png"]:
            break
    cfg = make_cfg("train", [f"protocol.seed={seed}"])
    cfg.data = {
        "_target_": f"{__name__}.PlantedDuplicateDataModule",
        "name": "planted",
        "data_dir": str(data_dir),
        "protocol": dict(cfg.protocol),
        "transforms": {"train": {}, "eval": {}},
        "batch_size": 4,
    }
    with pytest.raises(LeakageError, match="innocent_name.png"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "results.json").exists()


def test_selection_test_stamps_paper_parity_on_every_output(make_cfg):
    cfg = make_cfg(
        "train",
        ["protocol.selection=test", "trainer.max_epochs=1", "callbacks.early_stopping=null"],
    )
    train(cfg)
    out = Path(cfg.paths.output_dir)
    results = json.loads((out / "results.json").read_text())
    assert results["paper_parity"] is True and results["stamp"] == "paper-parity"
    assert (pd.read_csv(out / "predictions.csv")["stamp"] == "paper-parity").all()
    assert "PAPER-PARITY" in (out / "report.md").read_text()
    assert results["data"]["split_sizes"]["val"] == 0


def _in_mix(*members: pd.DataFrame) -> pd.DataFrame:
    """Records of several databases as data=mixed concatenates them (``content_db``: each its own;
    the refs clash across databases on purpose: R0 of bid is not R0 of koniq10k)."""
    return pd.concat([m.assign(content_db=m["db"]) for m in members], ignore_index=True)


@pytest.mark.parametrize("name", ["random", "content", "official"])
def test_a_database_splits_the_same_alone_and_inside_a_mix(name):
    """Each database draws from its own generator (split seed + its name): repeat r of koniq10k
    is the same split alone as inside a mix with databases drawn before it (StairIQA Table IV
    compares IMDT and single-database rows on the same images)."""
    sets = ["train"] * 150 + ["test"] * 50 if name == "official" else None
    koniq = _records(n_refs=40, per_ref=5, db="koniq10k", sets=sets)
    others = [_records(n_refs=n, per_ref=3, db=db) for n, db in ((12, "bid"), (30, "clive"))]
    if name == "official":
        others = [
            o.assign(set=np.where(o["ref"].str[1:].astype(int) % 4, "train", "test"))
            for o in others
        ]
    for repeat in (0, 4):
        protocol = Protocol(name=name, repeat=repeat)
        alone = assign_splits(koniq, protocol)["split"].to_numpy()
        mixed = assign_splits(_in_mix(*others, koniq), protocol)
        inside = mixed.loc[mixed["db"] == "koniq10k", "split"].to_numpy()
        assert (alone == inside).all()
        assert set(alone) == {"train", "val", "test"}


def test_a_content_group_is_drawn_once_for_all_its_databases():
    """Databases cut from the same pictures (``content_db``: FLIVE patches) share the pictures'
    draw: a picture and its patches are on one side, and the pictures split as they do alone."""
    pictures = _records(n_refs=30, per_ref=1, db="flive")
    patches = _records(n_refs=30, per_ref=3, db="flive_patches").assign(content_db="flive")
    protocol = Protocol(name="random", repeat=2)
    alone = assign_splits(pictures, protocol)
    both = assign_splits(
        pd.concat([pictures.assign(content_db="flive"), patches], ignore_index=True), protocol
    )
    assert both.groupby("ref")["split"].nunique().eq(1).all()
    assert (both.loc[both["db"] == "flive", "split"].to_numpy() == alone["split"].to_numpy()).all()
    patches_alone = assign_splits(patches, protocol)
    assert (
        patches_alone["split"].to_numpy() == both.loc[both["db"] == "flive_patches", "split"]
    ).all()


def test_dropping_a_few_contents_moves_only_contents_at_the_threshold():
    """A content's side is a function of its own key: the same database with one content fewer
    (a file dropped by data.on_bad=skip, a picture without patch labels) keeps every other
    content's side but the one or two at the 80/20 threshold, under random and official."""
    records = _records(n_refs=400, per_ref=1, db="koniq10k")
    fewer = records[records["ref"] != "R17"]
    for repeat in (0, 1):
        protocol = Protocol(name="random", repeat=repeat)
        full = assign_splits(records, protocol).set_index("ref")["split"]
        less = assign_splits(fewer, protocol).set_index("ref")["split"]
        moved = (full.drop("R17") != less).sum()
        assert moved <= 2, moved
        assert (full == "test").sum() == 80 and (less == "test").sum() == 80
