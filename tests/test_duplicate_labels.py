"""Conflicting duplicates are label problems: one picture under two names with two MOS, and an
image listed twice (``data.duplicate_labels=drop|first``)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from iqa_lab.data.bad_inputs import BadInputError
from iqa_lab.data.check import UNUSABLE, USABLE, check_database, render
from tests.planted import FolderDataModule, labels, pattern, plant, png_bytes

NAMES = [f"img{i}.png" for i in range(8)]


def _database(folder, copy_mos: float):
    """Eight distinct pictures, and ``copy.png`` with img0.png's pixels rated ``copy_mos``."""
    plant(folder, {name: png_bytes(pattern(seed=i + 1)) for i, name in enumerate(NAMES)})
    plant(folder, {"copy.png": png_bytes(pattern(seed=1))})
    mos = [0.1 + 0.1 * i for i in range(8)] + [copy_mos]
    return labels(NAMES + ["copy.png"], mos)


def test_identical_pixels_with_different_mos_are_refused_naming_both(tmp_path):
    with pytest.raises(BadInputError) as err:
        FolderDataModule(_database(tmp_path, copy_mos=0.9), tmp_path).setup()
    message = str(err.value)
    assert message.startswith("2 of 9 records of 'planted' cannot be used (data.on_bad=raise):")
    assert (
        "  - img0.png: label: identical pixels but different MOS: img0.png (MOS 0.1), "
        "copy.png (MOS 0.9); give the copies one MOS or remove all but one from the label file"
    ) in message
    assert "  - copy.png: label: identical pixels but different MOS" in message


@pytest.mark.parametrize("seed", range(4))
def test_under_skip_every_copy_is_dropped_and_listed_whatever_the_split(tmp_path, seed):
    protocol = {"name": "random", "train_fraction": 0.5, "val_fraction": 0.5, "seed": seed}
    datamodule = FolderDataModule(
        _database(tmp_path, copy_mos=0.9), tmp_path, on_bad="skip", protocol=protocol
    )
    datamodule.setup()  # no leakage error: the conflicting copies are gone before the split
    assert sorted(datamodule.records["image"]) == NAMES[1:]
    assert sorted((b["image"], b["kind"], b["db"]) for b in datamodule.bad_inputs) == [
        ("copy.png", "label", "planted"),
        ("img0.png", "label", "planted"),
    ]


def test_identical_pixels_with_one_mos_stay_the_leakage_guards(tmp_path):
    datamodule = FolderDataModule(_database(tmp_path, copy_mos=0.1), tmp_path)
    report = check_database(datamodule, workers=1)
    assert report.bad == [] and report.duplicates == [["img0.png", "copy.png"]]


def test_check_counts_conflicting_copies_as_label_problems(tmp_path):
    report = check_database(FolderDataModule(_database(tmp_path, 0.9), tmp_path), workers=1)
    assert report.count("label") == 2 and report.usable == 7 and len(report.mos_raw) == 7
    assert report.found == 9  # the copies' files are there: their labels are the problem
    assert report.duplicates == [["img0.png", "copy.png"]]  # still shown as identical images
    assert report.verdict == (
        UNUSABLE,
        "UNUSABLE under data.on_bad=raise: 2 bad records would stop a run; fix them, or train "
        "with data.on_bad=skip to drop them (7 records left)",
    )
    lenient = FolderDataModule(_database(tmp_path, 0.9), tmp_path, on_bad="skip")
    assert check_database(lenient, workers=1).verdict[0] == USABLE


def _listed_twice(folder, seed: int = 1):
    plant(folder, {name: png_bytes(pattern(seed=i + seed)) for i, name in enumerate(NAMES)})
    return labels(NAMES + ["img3.png"], [0.1 + 0.1 * i for i in range(8)] + [0.95])


def test_an_image_listed_twice_is_refused_by_default(tmp_path):
    with pytest.raises(BadInputError, match=r"img3\.png: label: image listed twice or more"):
        FolderDataModule(_listed_twice(tmp_path), tmp_path).setup()


def test_duplicate_labels_first_keeps_the_first_row(tmp_path):
    datamodule = FolderDataModule(_listed_twice(tmp_path), tmp_path, duplicate_labels="first")
    datamodule.setup()
    assert sorted(datamodule.records["image"]) == NAMES
    kept = datamodule.records.set_index("image").at["img3.png", "mos_raw"]
    assert kept == pytest.approx(0.4) and datamodule.bad_inputs == []
    assert datamodule.input_notes == [
        {
            "image": "img3.png",
            "note": "listed again: kept its first row (MOS 0.4), dropped this one (MOS 0.95) "
            "(data.duplicate_labels=first)",
        }
    ]

    report = check_database(
        FolderDataModule(_listed_twice(tmp_path), tmp_path, duplicate_labels="first"), workers=1
    )
    assert report.records == 9 and report.usable == 8 and report.bad == []
    assert report.verdict == (USABLE, "usable: 8 records")
    out = io.StringIO()
    render(report, Console(file=out, width=140))
    assert "listed again (1):\n  - img3.png: listed again: kept its first row" in out.getvalue()


def test_duplicate_labels_must_be_drop_or_first(tmp_path):
    with pytest.raises(
        ValueError, match=r"data\.duplicate_labels must be one of \('drop', 'first'\), got 'last'"
    ):
        FolderDataModule(labels(NAMES), tmp_path, duplicate_labels="last")


def test_mixed_duplicate_labels_governs_every_member(tmp_path):
    from iqa_lab.data.mixed import MixedDataModule

    members = {}
    for name, seed in (("a", 1), ("b", 20)):  # other pictures in b
        member = FolderDataModule(_listed_twice(tmp_path / name, seed), tmp_path / name)
        member.name = name
        members[name] = member
    mixed = MixedDataModule(
        databases=members,
        name="mixed",
        data_dir=str(tmp_path),
        duplicate_labels="first",
        protocol={"name": "random", "train_fraction": 0.5, "val_fraction": 0.5},
    )
    mixed.setup()
    assert len(mixed.records) == 16 and mixed.bad_inputs == []
    assert [(n["db"], n["image"]) for n in mixed.input_notes] == [
        ("a", "img3.png"),
        ("b", "img3.png"),
    ]
