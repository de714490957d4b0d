"""The embedded synthetic database: deterministic, content-separated, sensibly labelled."""

import hashlib
import re

import numpy as np
import pandas as pd
import pytest

from iqa_lab import progress
from iqa_lab.data.distortions import DISTORTIONS, LEVELS, distort
from iqa_lab.data.pristine import PRISTINE_PHOTOS, load_pristine
from iqa_lab.data.protocols import Protocol, assign_splits
from iqa_lab.data.records import RECORD_COLUMNS
from iqa_lab.data.synthetic import SyntheticDataModule, build_synthetic

LABELS = {
    "ms_ssim": {"weight": 1.0, "worst": 0.5, "best": 1.0},
    "vif_p": {"weight": 1.0, "worst": 0.0, "best": 1.0},
    "gmsd": {"weight": 1.0, "worst": 0.3, "best": 0.0},
}
PARAMS = dict(
    photos=["astronaut", "coffee", "camera"],
    crops_per_photo=2,
    crop_size=64,
    distortions=["gaussian_blur", "white_noise", "jpeg", "darken"],
    levels=[1, 3, 5],
    label_metrics=LABELS,
    include_pristine=True,
    progress=False,
)


def _digest(folder) -> dict:
    return {
        p.name: hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted((folder / "images").glob("*.png"))
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    first = build_synthetic(root / "a", seed=0, **PARAMS)
    second = build_synthetic(root / "b", seed=0, **PARAMS)
    other = build_synthetic(root / "c", seed=1, **PARAMS)
    return root, first, second, other


def test_same_seed_same_database(built):
    root, first, second, _ = built
    pd.testing.assert_frame_equal(first, second)
    assert _digest(root / "a") == _digest(root / "b")
    assert (root / "a" / "labels.csv").read_bytes() == (root / "b" / "labels.csv").read_bytes()


def test_other_seed_other_crops(built):
    root, first, _, other = built
    assert _digest(root / "a") != _digest(root / "c")
    assert not np.allclose(first["mos_raw"], other["mos_raw"])


def test_records_schema_and_labels(built):
    root, first, _, _ = built
    assert list(first.columns) == RECORD_COLUMNS
    assert len(first) == 3 * 2 * (4 * 3 + 1)
    assert first["db"].eq("synthetic").all()
    assert first["mos_raw"].between(1, 5).all() and first["mos"].between(0, 1).all()
    assert np.allclose(first["mos"], (first["mos_raw"] - 1) / 4)
    pristine = first[first["dist_type"] == "pristine"]
    assert np.allclose(pristine["mos_raw"], 5.0)
    assert set(first["ref"]) == {"astronaut", "coffee", "camera"}
    for path in first["image"]:
        assert (root / "a" / path).is_file()


def test_stronger_distortion_scores_lower(built):
    _, first, _, _ = built
    for name in ("gaussian_blur", "white_noise", "jpeg"):
        rows = first[first["dist_type"] == name]
        means = rows.groupby("dist_level")["mos_raw"].mean()
        assert means[1] > means[3] > means[5], (name, means.to_dict())


def test_content_split_keeps_each_photo_on_one_side(built):
    _, first, _, _ = built
    for seed in range(5):
        split = assign_splits(
            first, Protocol(name="content", seed=seed, train_fraction=0.67, val_fraction=0.5)
        )
        sides = split.groupby("ref")["split"].nunique()
        assert (sides == 1).all()
        assert set(split["split"]) == {"train", "val", "test"}


def test_the_build_reports_images_done_rate_and_eta(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IQA_LAB_PROGRESS", "1")  # stderr is not a terminal here
    monkeypatch.setattr(progress, "DELAY", 0.0)
    small = dict(PARAMS, photos=["astronaut", "coffee"], crops_per_photo=1, levels=[1, 5])
    small.update(distortions=["jpeg"], progress=True)
    build_synthetic(tmp_path / "db", seed=0, **small)
    head, rate = "building synthetic database:", r"[\d.]+ (images/s|s per image), elapsed \d+s"
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines  # the first photo's 3 images, then the final count
    assert re.fullmatch(rf"{head} 3/6 images \(50%\), {rate}, ETA \d+s", lines[0])
    assert re.fullmatch(rf"{head} 6/6 images \(100%\), {rate}", lines[1])


def test_datamodule_builds_once_into_cache(tmp_path):
    kwargs = dict(PARAMS, seed=0)
    kwargs.pop("progress")
    common = dict(
        name="synthetic",
        protocol={"name": "content", "train_fraction": 0.67, "val_fraction": 0.5},
        transforms={"train": {"crop_size": None}, "eval": {"crop_size": None}},
    )
    dm = SyntheticDataModule(cache_dir=str(tmp_path), **kwargs, **common)
    dm.setup("fit")
    labels = dm.data_dir / "labels.csv"
    assert labels.is_file() and dm.data_dir.parent == tmp_path
    stamp = labels.stat().st_mtime_ns
    again = SyntheticDataModule(cache_dir=str(tmp_path), **kwargs, **common)
    again.setup("fit")
    assert again.data_dir == dm.data_dir and labels.stat().st_mtime_ns == stamp
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape[1:] == (3, 64, 64)
    assert 0 <= float(batch["image"].min()) and float(batch["image"].max()) <= 1
    changed = SyntheticDataModule(cache_dir=str(tmp_path), **dict(kwargs, seed=5), **common)
    assert changed.data_dir != dm.data_dir


def test_at_least_fifteen_kadid_types_at_five_levels():
    assert len(DISTORTIONS) >= 15 and LEVELS == 5
    assert len({d.kadid_id for d in DISTORTIONS.values()}) == len(DISTORTIONS)


@pytest.mark.parametrize("name", sorted(DISTORTIONS))
def test_each_distortion_is_deterministic_and_grows_with_level(name):
    image = load_pristine("astronaut")[100:228, 100:228]
    outputs = [distort(image, name, level, seed=3) for level in range(1, 6)]
    assert np.array_equal(outputs[2], distort(image, name, 3, seed=3))
    change = [np.abs(o.astype(int) - image).mean() for o in outputs]
    assert change[0] > 0
    assert change[4] > change[0], change


@pytest.mark.parametrize("name", sorted(DISTORTIONS))
def test_the_strongest_level_keeps_what_tells_two_photos_apart(name):
    """A 128 px crop at level 5 stays a picture of its photo: JPEG 2000 at 1:256 on 128 px once
    wrote an empty code stream, so every photo decoded to the same grey image (with different
    labels), which the leakage guard rightly refused in the demo table."""
    crops = [load_pristine(photo)[100:228, 100:228] for photo in ("coins", "moon", "astronaut")]
    outputs = [distort(crop, name, 5, seed=3) for crop in crops]
    for output in outputs:
        assert output.min() < output.max()
    assert not np.array_equal(outputs[0], outputs[1])
    assert not np.array_equal(outputs[0], outputs[2])


def test_every_pristine_photo_loads_offline():
    for name in PRISTINE_PHOTOS:
        image = load_pristine(name)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        assert min(image.shape[:2]) >= 128


TINY = dict(
    PARAMS, photos=["astronaut", "coffee"], crops_per_photo=1, levels=[1], distortions=["jpeg"]
)


def test_parallel_builds_of_one_database_do_not_share_a_work_folder(tmp_path):
    # The jobs of a multirun (submitit, a SLURM array) build the same cached database at once:
    # one build must not delete the folder another is writing into.
    others = [tmp_path / "db.partial", tmp_path / "db.4242-0.tmp"]  # old and current naming
    for other in others:
        (other / "images").mkdir(parents=True)
        (other / "images" / "half_written.png").write_bytes(b"x")
    build_synthetic(tmp_path / "db", seed=0, **TINY)
    assert (tmp_path / "db" / "labels.csv").is_file()
    assert all((other / "images" / "half_written.png").is_file() for other in others)


def test_a_build_that_finishes_second_keeps_the_first_database(tmp_path):
    first = build_synthetic(tmp_path / "db", seed=0, **TINY)
    stamp = (tmp_path / "db" / "labels.csv").stat().st_mtime_ns
    second = build_synthetic(tmp_path / "db", seed=0, **TINY)
    pd.testing.assert_frame_equal(first, second)
    assert (tmp_path / "db" / "labels.csv").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]  # its own work folder is gone
