"""``python -m iqa_lab.data.check``: counts on a planted database, the verdict, the exit status."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from PIL import Image
from rich.console import Console

from iqa_lab.data.check import UNUSABLE, USABLE, check_database, histogram_lines, render, run_check
from iqa_lab.data.leakage import pixel_hash
from tests.conftest import SHARED, TINY_DATA
from tests.planted import (
    FolderDataModule,
    corrupt_middle_png,
    jpeg_bytes,
    labels,
    pattern,
    plant,
    png_bytes,
)

ROOT = Path(__file__).resolve().parents[1]


def bad_database(folder: Path) -> pd.DataFrame:
    good = [f"good{i}.png" for i in range(6)]
    plant(folder, {name: png_bytes(pattern(seed=i + 1)) for i, name in enumerate(good)})
    bmp = io.BytesIO()
    Image.fromarray(pattern(seed=1)).save(bmp, "BMP")  # the pixels of good0.png
    plant(
        folder,
        {
            "copy_of_good0.bmp": bmp.getvalue(),
            "Upper.JPG": jpeg_bytes(pattern(seed=20)),
            "truncated.jpg": jpeg_bytes(pattern(seed=21))[:-200],
            "broken.png": corrupt_middle_png(pattern(seed=22)),
        },
    )
    images = good + [
        "copy_of_good0.bmp",
        "upper.jpg",
        "truncated.jpg",
        "broken.png",
        "gone.jpg",
        "nan.png",
    ]
    mos = list(np.linspace(0.1, 0.9, len(images) - 1)) + [np.nan]
    mos[images.index("copy_of_good0.bmp")] = mos[0]  # one MOS: a duplicate, not a label problem
    return labels(images, mos)


def test_check_counts_every_kind_of_problem(tmp_path):
    datamodule = FolderDataModule(bad_database(tmp_path), tmp_path)
    report = check_database(datamodule, workers=2)
    assert report.records == 12
    assert {kind: report.count(kind) for kind in ("label", "missing", "unreadable", "decode")} == {
        "label": 1,
        "missing": 1,
        "unreadable": 1,
        "decode": 1,
    }
    assert [n["image"] for n in report.case_resolved] == ["upper.jpg"]
    assert report.duplicates == [["good0.png", "copy_of_good0.bmp"]]
    assert report.usable == 8 and len(report.mos_raw) == 8
    assert report.verdict[0] == UNUSABLE

    out = io.StringIO()
    render(report, Console(file=out, width=120))
    text = out.getvalue()
    for line in (
        "│ records in the label files ",
        "│ usable ",
        "case-resolved (1):",
        "- upper.jpg: case-resolved: 'upper.jpg' → 'Upper.JPG'",
        "missing (1):",
        "- truncated.jpg:",
        "- broken.png:",
        "identical images (1):",
        "- good0.png, copy_of_good0.bmp",
        "UNUSABLE under data.on_bad=raise: 4 bad",
    ):
        assert line in text, line

    lenient = FolderDataModule(bad_database(tmp_path), tmp_path, on_bad="skip")
    code, verdict = check_database(lenient, workers=2).verdict
    assert code == USABLE and verdict.startswith("usable with data.on_bad=skip: 8 records")


def test_a_database_with_no_usable_record_is_unusable(tmp_path):
    plant(tmp_path, {"empty.jpg": b""})
    report = check_database(
        FolderDataModule(labels(["empty.jpg", "gone.jpg"]), tmp_path, on_bad="skip")
    )
    assert report.usable == 0 and report.verdict == (UNUSABLE, "UNUSABLE: no usable record")


def test_histogram_lines():
    lines = histogram_lines(np.array([0.0, 0.1, 0.1, 1.0]), bins=2, width=4)
    assert lines == ["[        0,       0.5)       3 ████", "[      0.5,         1]       1 █"]


def test_cli_passes_a_clean_database_and_fails_a_broken_copy(make_cfg, tmp_path, capsys):
    cfg = make_cfg("check")
    assert run_check(cfg) == 0
    assert "usable: 28 records" in capsys.readouterr().out

    # The same tiny synthetic database, copied into another cache with one image cut short (its
    # own folder: the shared cache holds other tests' synthetic databases too).
    folder = Path(instantiate(cfg.data).data_dir)
    cache = tmp_path / "cache"
    shutil.copytree(folder, cache / folder.name)
    victim = sorted((cache / folder.name).rglob("*.png"))[3]
    victim.write_bytes(victim.read_bytes()[:-12])
    command = [sys.executable, "-m", "iqa_lab.data.check", *TINY_DATA, f"data.cache_dir={cache}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == UNUSABLE, result.stdout + result.stderr
    assert f"{victim.name}" in result.stdout and "truncated PNG" in result.stdout
    assert "UNUSABLE under data.on_bad=raise: 1 bad records" in result.stdout
    assert not list(ROOT.glob("check.log")) and not (ROOT / ".hydra").exists()


def test_cli_on_the_shared_biq2021(make_cfg, capsys):
    if (
        not (SHARED / "data" / "BIQ2021").is_dir()
        or not (ROOT / "conf/data/biq2021.yaml").is_file()
    ):
        pytest.skip("../shared/data/BIQ2021 or conf/data/biq2021.yaml is absent")
    cfg = make_cfg(
        "check",
        ["data=biq2021", f"data.data_dir={SHARED / 'data' / 'BIQ2021'}", "decode=false"],
        tiny=False,
    )
    assert run_check(cfg) == 0
    out = capsys.readouterr().out
    assert "usable: 5000 records" in out
    assert "'ss02 (1014).jpg' → 'ss02 (1014).JPG'" in out


class BoxedDataModule(FolderDataModule):
    """Patches: several records name one picture, each with its own box (as FLIVE's)."""

    def load_records(self):
        records = super().load_records()
        boxes = pd.DataFrame(
            {"top": [0, 8, 0], "left": [0, 8, 0], "bottom": [16, 24, 16], "right": [16, 24, 16]}
        )
        return pd.concat([records, boxes], axis=1)


def test_patches_of_one_picture_are_decoded_once_and_not_duplicates(tmp_path, monkeypatch):
    plant(
        tmp_path,
        {"picture.png": png_bytes(pattern(seed=1)), "other.png": png_bytes(pattern(seed=2))},
    )
    decoded = []

    def counting(path):
        decoded.append(Path(path).name)
        return pixel_hash(path)

    monkeypatch.setattr("iqa_lab.data.check.pixel_hash", counting)
    datamodule = BoxedDataModule(labels(["picture.png", "picture.png", "other.png"]), tmp_path)
    report = check_database(datamodule, workers=1)
    assert sorted(decoded) == ["other.png", "picture.png"]
    assert report.duplicates == [] and report.bad == [] and report.usable == 3
