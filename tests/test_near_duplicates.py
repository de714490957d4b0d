"""The near-duplicate pass (``data.near_duplicates``): candidates by thumbnail correlation,
confirmation by full-resolution PSNR, the caches, and what runs do with the pairs (random splits
keep twins together; official splits report them and give ``test_nodup/…``)."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from rich.console import Console

from iqa_lab import progress
from iqa_lab.data import near_duplicates
from iqa_lab.data.check import check_database, render
from iqa_lab.data.near_duplicates import (
    NearDuplicateSettings,
    candidate_pairs,
    find_near_duplicates,
    join_near_duplicates,
    merge_refs,
    psnr,
    thumbnail,
)
from iqa_lab.data.records import check_schema, make_records
from iqa_lab.eval import evaluate
from iqa_lab.evaluation.outputs import without_twins_metrics
from tests.conftest import SHARED
from tests.planted import FolderDataModule, corrupt_middle_png, jpeg_bytes, labels, plant, png_bytes

SETTINGS = {
    "enabled": True,
    "thumbnail_size": 16,
    "min_correlation": 0.999,
    "min_psnr": 30.0,
    "block": 4,  # small blocks, so the tests cross block boundaries
}


def photo(seed: int, size: int = 64) -> np.ndarray:
    """A smooth random RGB picture (8x8 noise upsampled): distinct seeds are far apart."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(30, 226, size=(8, 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))


def brighter(image: np.ndarray, offset: int = 20) -> np.ndarray:
    return (image.astype(int) + offset).clip(0, 255).astype(np.uint8)


def plant_twins(folder: Path, distinct: int = 24, twins: int = 8) -> list[tuple[str, str]]:
    """``distinct`` pictures as PNG plus a JPEG re-encode of the first ``twins`` (a near-duplicate,
    ~40 dB); returns the twin pairs (original, re-encode)."""
    files = {f"p{i:02d}.png": png_bytes(photo(i)) for i in range(distinct)}
    files.update({f"twin{i:02d}.jpg": jpeg_bytes(photo(i)) for i in range(twins)})
    plant(folder, files)
    return [(f"p{i:02d}.png", f"twin{i:02d}.jpg") for i in range(twins)]


def test_thumbnail_correlation_and_psnr_values():
    image = photo(1)
    same = thumbnail(image, 16)
    assert same.shape == (256,) and np.isclose(np.linalg.norm(same), 1.0)
    # A brightness offset keeps the correlation at 1 (so PSNR must confirm), a new photo does not.
    assert float(same @ thumbnail(brighter(image), 16)) > 0.9999
    assert float(same @ thumbnail(photo(2), 16)) < 0.9
    assert not thumbnail(np.full((8, 8, 3), 7, np.uint8), 16).any()  # flat: never a candidate
    assert psnr(image, brighter(image, 20)) == pytest.approx(20 * np.log10(255 / 20), abs=0.05)
    assert psnr(image, image) == float("inf")
    # Different sizes: the larger is resized to the smaller.
    half = np.asarray(Image.fromarray(image).resize((32, 32), Image.Resampling.BOX))
    assert psnr(image, half) == float("inf")


def test_blockwise_candidates_equal_the_full_matrix():
    rng = np.random.default_rng(0)
    thumbs = rng.normal(size=(23, 16)).astype(np.float32)
    thumbs[5] = thumbs[17] + 1e-4  # two near-identical rows across blocks
    thumbs[3] = thumbs[4]
    thumbs[9] = np.nan  # an unreadable file
    thumbs -= thumbs.mean(axis=1, keepdims=True)
    thumbs /= np.linalg.norm(thumbs, axis=1, keepdims=True)
    full = thumbs @ thumbs.T
    expected = [
        (i, j)
        for i in range(23)
        for j in range(i + 1, 23)
        if np.isfinite(full[i, j]) and full[i, j] >= 0.3
    ]
    for block in (1, 4, 7, 100):
        found = candidate_pairs(thumbs, 0.3, block)
        assert [(i, j) for i, j, _ in found] == expected
    assert [(i, j) for i, j, _ in candidate_pairs(thumbs, 0.999, 4)] == [(3, 4), (5, 17)]


def test_find_near_duplicates_confirms_at_full_size_and_caches(tmp_path, monkeypatch):
    plant(
        tmp_path,
        {
            "a.png": png_bytes(photo(1)),
            "a_reencoded.jpg": jpeg_bytes(photo(1)),  # near-duplicate (~40 dB)
            "a_brighter.png": png_bytes(brighter(photo(1))),  # correlated, but 22 dB: not one
            "b.png": png_bytes(photo(2)),
            "b_copy.png": png_bytes(photo(2)),  # identical pixels: the exact guard's business
            "broken.png": corrupt_middle_png(photo(3)),  # must not stop the pass
            "c.png": png_bytes(photo(4)),
        },
    )
    paths = [tmp_path / n for n in sorted(p.name for p in tmp_path.iterdir())]
    settings = NearDuplicateSettings(**SETTINGS)
    pairs = find_near_duplicates(paths, settings, cache_dir=tmp_path / "cache", name="planted")
    assert [(Path(a).name, Path(b).name) for a, b in zip(pairs["a"], pairs["b"])] == [
        ("a.png", "a_reencoded.jpg")
    ]
    assert pairs["correlation"].iloc[0] > 0.999 and 35 < pairs["psnr"].iloc[0] < 60
    assert (tmp_path / "cache" / "thumbnails_16.npz").is_file()
    assert len(list((tmp_path / "cache" / "near_duplicates").glob("planted-*.csv"))) == 1

    # The second pass reads the cached pairs: nothing is decoded.
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(near_duplicates, "load_rgb", no_decoding)
    again = find_near_duplicates(paths, settings, cache_dir=tmp_path / "cache", name="planted")
    pd.testing.assert_frame_equal(again, pairs)
    # Stricter thresholds are another cache entry; thumbnails are reused (no decoding needed
    # until a candidate is confirmed, and the stricter correlation leaves it a candidate).
    monkeypatch.undo()
    strict = NearDuplicateSettings(**{**SETTINGS, "min_psnr": 60.0})
    assert find_near_duplicates(paths, strict, cache_dir=tmp_path / "cache", name="planted").empty


def test_merge_refs_joins_chains():
    refs = pd.Series(["r1", "r2", "r3", "r4", "r5"], index=[10, 11, 12, 13, 14])
    merged = merge_refs(refs, [[10, 11], [12, 11], [14, 14]])
    assert merged.tolist() == ["r1", "r1", "r1", "r4", "r5"]


def _splits_of(datamodule) -> pd.Series:
    return datamodule.records.set_index("image")["split"]


def test_a_random_split_keeps_every_twin_pair_together(tmp_path):
    pairs = plant_twins(tmp_path)
    images = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    for seed in range(4):
        protocol = {"name": "random", "seed": seed, "train_fraction": 0.5, "val_fraction": 0.3}
        guarded = FolderDataModule(
            labels(images), tmp_path, protocol=protocol, near_duplicates=SETTINGS
        )
        guarded.hash_cache_dir = str(tmp_path / "cache")
        guarded.setup()
        split = _splits_of(guarded)
        assert all(split[a] == split[b] for a, b in pairs), seed
        assert guarded.near_duplicates["pairs"] == len(pairs)
        assert guarded.near_duplicates["straddling"] == []
    # Without the pass the same draws separate twins (what runs did before).
    unguarded = FolderDataModule(labels(images), tmp_path, protocol=protocol)
    unguarded.setup()
    split = _splits_of(unguarded)
    assert any(split[a] != split[b] for a, b in pairs)
    assert unguarded.near_duplicates is None


def test_the_pass_runs_per_database_under_mixed(tmp_path):
    from iqa_lab.data.mixed import MixedDataModule

    pairs = plant_twins(tmp_path / "one", distinct=12, twins=4)
    plant(tmp_path / "two", {f"p{i:02d}.png": png_bytes(photo(100 + i)) for i in range(12)})
    # A near-duplicate of p00 in the other database is not a pair: each database is searched on
    # its own (cross-database protocols put whole databases on one side).
    plant(tmp_path / "two", {"p00_other.png": png_bytes(brighter(photo(0), 3))})
    members = {
        name: FolderDataModule(
            labels(sorted(p.name for p in (tmp_path / name).iterdir())), tmp_path / name
        )
        for name in ("one", "two")
    }
    for name, member in members.items():
        member.name = name
    mixed = MixedDataModule(
        databases=members,
        name="mixed",
        data_dir=str(tmp_path),
        protocol={"name": "random", "seed": 1, "train_fraction": 0.5, "val_fraction": 0.3},
        near_duplicates=SETTINGS,
    )
    mixed.setup()
    records = mixed.records
    assert mixed.near_duplicates["pairs"] == len(pairs)
    for a, b in pairs:
        rows = records[(records["db"] == "one") & records["image"].isin([a, b])]
        assert rows["split"].nunique() == 1 and rows["ref"].nunique() == 1


class OfficialTwins(FolderDataModule):
    """A planted database with an official train / test split (``set``)."""

    def load_records(self) -> pd.DataFrame:
        return make_records(self.labels, self.name, (0.0, 1.0))


def _official_twins(folder: Path) -> pd.DataFrame:
    """24 pictures, 8 of them re-encoded; the official test set holds three originals whose
    re-encodes are in train, and one pair that sits wholly in train."""
    pairs = plant_twins(folder)
    frame = labels(
        [name for pair in pairs for name in pair] + [f"p{i:02d}.png" for i in range(8, 24)]
    )
    frame["mos_raw"] = np.linspace(0.1, 0.9, len(frame))
    test = {"p00.png", "p01.png", "p02.png"} | {f"p{i:02d}.png" for i in range(16, 24)}
    frame["set"] = np.where(frame["image"].isin(test), "test", "train")
    return frame


def test_official_splits_warn_and_list_straddling_twins(tmp_path, caplog):
    datamodule = OfficialTwins(
        _official_twins(tmp_path),
        tmp_path,
        protocol={"name": "official", "val_fraction": 0.3},
        near_duplicates=SETTINGS,
    )
    with caplog.at_level(logging.WARNING):
        datamodule.setup()
    report = datamodule.near_duplicates
    assert report["pairs"] == 8
    assert [(s["test_image"], s["train_image"]) for s in report["straddling"]] == [
        ("p00.png", "twin00.jpg"),
        ("p01.png", "twin01.jpg"),
        ("p02.png", "twin02.jpg"),
    ]
    assert datamodule.test_images_with_training_twin == {
        ("planted", "p00.png"),
        ("planted", "p01.png"),
        ("planted", "p02.png"),
    }
    assert "3 near-duplicate pairs have one image in test" in caplog.text
    # The official sides stay as published; pairs within training share a ref (one side of the
    # validation carve).
    split = _splits_of(datamodule)
    assert split["p00.png"] == "test" and split["twin00.jpg"] in ("train", "val")
    for i in range(3, 8):
        assert split[f"p{i:02d}.png"] == split[f"twin{i:02d}.jpg"]


def test_without_twins_metrics_leave_out_the_twinned_test_images():
    test = pd.DataFrame(
        {
            "db": "planted",
            "image": list("abcdefgh"),
            "mos": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
            "prediction": [0.9, 0.2, 0.35, 0.38, 0.52, 0.6, 0.75, 0.77],
        }
    )
    assert without_twins_metrics(test, set(), None) == {}
    # ("other", "b") names another database's b: it stays.
    metrics = without_twins_metrics(test, {("planted", "a"), ("other", "b")}, None)
    assert metrics["test_nodup/srcc"] == pytest.approx(1.0)  # b..h are in order, a is not
    assert metrics["test_nodup/srcc_ci_low"] == pytest.approx(1.0)
    assert all(key.startswith("test_nodup/") for key in metrics)


def test_an_official_run_reports_test_and_test_nodup(make_cfg, tmp_path):
    data_dir = tmp_path / "official"
    _official_twins(data_dir).to_csv(tmp_path / "labels.csv", index=False)
    cfg = make_cfg("eval", ["model=classical", "model.metric=brisque_live", "protocol=official"])
    cfg.data = {
        "_target_": f"{__name__}.CsvOfficialTwins",
        "labels_csv": str(tmp_path / "labels.csv"),
        "data_dir": str(data_dir),
        "protocol": dict(cfg.protocol),
        "near_duplicates": SETTINGS,
        "batch_size": 4,
    }
    metrics = evaluate(cfg)
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    straddling = results["near_duplicates"]["straddling"]
    assert [s["test_image"] for s in straddling] == ["p00.png", "p01.png", "p02.png"]
    assert results["data"]["split_sizes"]["test"] == 11
    assert np.isfinite(metrics["test/srcc"]) and np.isfinite(metrics["test_nodup/srcc"])
    assert results["metrics"]["test_nodup/srcc"] == metrics["test_nodup/srcc"]
    assert metrics["test_nodup/srcc"] != metrics["test/srcc"]


class CsvOfficialTwins(OfficialTwins):
    def __init__(self, labels_csv: str, data_dir: str, **kwargs):
        super().__init__(pd.read_csv(labels_csv), Path(data_dir), **kwargs)


def test_check_lists_near_duplicates_with_their_mos(tmp_path):
    pairs = plant_twins(tmp_path, distinct=10, twins=4)
    images = sorted(p.name for p in tmp_path.iterdir())
    mos = {f"p{i:02d}.png": 0.05 + 0.09 * i for i in range(10)}
    mos.update({f"twin{i:02d}.jpg": mos[f"p{i:02d}.png"] + 0.01 for i in range(4)})
    datamodule = FolderDataModule(
        labels(images, [mos[i] for i in images]), tmp_path, near_duplicates=SETTINGS
    )
    report = check_database(datamodule, workers=2)
    assert [(p["image_a"], p["image_b"]) for p in report.near_duplicates] == pairs
    first = report.near_duplicates[0]
    assert (first["mos_raw_a"], first["mos_raw_b"]) == pytest.approx((0.05, 0.06))
    out = io.StringIO()
    render(report, Console(file=out, width=200))
    text = out.getvalue()
    assert re.search(r"│ near-duplicate pairs \(data.near_duplicates\) +│ +4 │", text)
    assert "near-duplicate pairs (4):" in text
    assert (
        "- p00.png (MOS 0.05) ~ twin00.jpg (MOS 0.06): thumbnail correlation 1.0000, PSNR" in text
    )
    assert "MOS of near-duplicate twins: SRCC 1.000 over 4 pairs, median |ΔMOS| 0.0100" in text
    assert report.verdict[0] == 0  # near-duplicates do not make a database unusable


def test_the_check_shows_images_done_rate_and_eta_of_its_passes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IQA_LAB_PROGRESS", "1")  # stderr is not a terminal here
    monkeypatch.setattr(progress, "DELAY", 0.0)
    plant_twins(tmp_path, distinct=10, twins=4)
    images = sorted(p.name for p in tmp_path.iterdir())
    datamodule = FolderDataModule(
        labels(images, np.linspace(0.1, 0.9, len(images))), tmp_path, near_duplicates=SETTINGS
    )
    check_database(datamodule, workers=2)
    rate = r"\d[\d.]* (images/s|s per image), elapsed \d+s"
    lines = capsys.readouterr().err.splitlines()
    # Each pass: a line after its first image, then its final count.
    expected = [
        (
            rf"{title}: 1/14 images \(7%\), {rate}, ETA \d+s",
            rf"{title}: 14/14 images \(100%\), {rate}",
        )
        for title in ("decoding and hashing", "near-duplicate thumbnails")
    ]
    patterns = [pattern for pair in expected for pattern in pair]
    assert len(lines) == len(patterns), lines
    for pattern, line in zip(patterns, lines):
        assert re.fullmatch(pattern, line), (pattern, line)


def test_pairs_that_already_share_a_reference_are_not_searched(tmp_path):
    """A synthetic database's distortions of one reference are near-duplicates that every split
    keeps together already: they are neither confirmed (hours on KADID-10k) nor reported."""
    pairs = plant_twins(tmp_path, distinct=10, twins=4)
    images = sorted(p.name for p in tmp_path.iterdir())
    frame = labels(images)
    frame["ref"] = frame["image"].str.replace("twin", "p").str.replace(".jpg", ".png")
    datamodule = FolderDataModule(frame, tmp_path, near_duplicates=SETTINGS)
    assert datamodule.find_near_duplicates(datamodule.load_records()).empty
    paths = [tmp_path / name for pair in pairs for name in pair]
    settings = NearDuplicateSettings(**SETTINGS)
    assert len(find_near_duplicates(paths, settings)) == 4
    assert find_near_duplicates([], settings).empty
    assert find_near_duplicates(paths, settings, groups=[0, 0, 1, 1, 2, 2, 3, 3]).empty
    assert len(find_near_duplicates(paths, settings, groups=[0, 1, 1, 2, 2, 3, 3, 4])) == 4


@pytest.mark.slow
def test_the_shared_biq2021_twins_stay_together_under_random_splits(make_cfg):
    """The 5,000 shared BIQ2021 images: 70 confirmed pairs (measured when the pass was added),
    none of them split by any of the ten random repeats."""
    if not (SHARED / "data" / "BIQ2021").is_dir():
        pytest.skip("../shared/data/BIQ2021 is absent")
    cfg = make_cfg(
        "train",
        ["data=biq2021", f"data.data_dir={SHARED / 'data' / 'BIQ2021'}", "protocol=random"],
        tiny=False,
    )
    for repeat in range(10):
        cfg.protocol.repeat = repeat
        datamodule = hydra.utils.instantiate(cfg.data, protocol=cfg.protocol)
        datamodule.hash_cache_dir = cfg.paths.cache_dir
        pairs = datamodule.find_near_duplicates(
            datamodule.screen_inputs(check_schema(datamodule.load_records()))
        )
        assert len(pairs) == 70
        datamodule.setup()
        split = _splits_of(datamodule)
        assert (split[pairs["image_a"]].to_numpy() == split[pairs["image_b"]].to_numpy()).all()


def test_join_moves_every_record_of_a_file_and_keeps_official_sets():
    """Several records per file (FLIVE's patches) all follow the merged ref; under official splits
    only pairs within one set are joined."""
    records = pd.DataFrame(
        {
            "db": "d",
            "image": ["x.jpg", "x.jpg", "y.jpg", "z.jpg", "w.jpg"],
            "ref": ["x", "x", "y", "z", "w"],
            "set": ["train", "train", "train", "test", "train"],
        }
    )
    pairs = pd.DataFrame({"db": "d", "image_a": ["y.jpg", "z.jpg"], "image_b": ["x.jpg", "w.jpg"]})
    assert join_near_duplicates(records, pairs)["ref"].tolist() == ["x", "x", "x", "w", "w"]
    official = join_near_duplicates(records, pairs, official=True)
    assert official["ref"].tolist() == ["x", "x", "x", "z", "w"]
