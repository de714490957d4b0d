"""``iqa-score``: new photos scored by a tiny trained checkpoint (its stored eval transform and MOS
scale) or by a classical measure; bad files listed, the rest scored; CSV and JSON outputs."""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import ListConfig

from iqa_lab import classical
from iqa_lab.data.images import load_rgb
from iqa_lab.data.records import normalise_mos, published_scale
from iqa_lab.data.scoring_recipe import database_recipe, scoring_recipe
from iqa_lab.data.transforms import build_transform
from iqa_lab.errors import ConfigError
from iqa_lab.models.base import load_iqa_module
from iqa_lab.score import score
from iqa_lab.train import train
from tests.conftest import TINY_DATA, compose_config
from tests.planted import jpeg_bytes, pattern, plant, png_bytes
from tests.train_runs import run_app

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null", "logger=none"]
SIDE = 64  # the tiny database's images: the checkpoint's eval transform keeps native size


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, cache_dir) -> Path:
    """A checkpoint of one epoch on the tiny synthetic database (MOS scale 1-5)."""
    out = tmp_path_factory.mktemp("trained")
    cfg = compose_config(
        "train",
        TINY_DATA
        + [
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=2",
            "+trainer.limit_test_batches=1",
        ]
        + ["reuse_finished=false", *QUIET],
        out,
        cache_dir,
    )
    train(cfg)
    return Path(json.loads((out / "results.json").read_text())["checkpoint"])


def _photos(folder: Path, count: int = 3) -> list[Path]:
    """``count`` distinct 64 px photos (PNG and JPEG) in ``folder`` and a subfolder."""
    files = {}
    for i in range(count):
        pixels = np.roll(pattern(SIDE, SIDE, seed=i), 7 * i, axis=1)
        name = f"sub/photo{i}.jpg" if i == count - 1 else f"photo{i}.png"
        files[name] = jpeg_bytes(pixels) if name.endswith(".jpg") else png_bytes(pixels)
    (folder / "sub").mkdir(parents=True)
    plant(folder, files)
    return [folder / name for name in files]


def _bomb_png(side: int = 40_000) -> bytes:
    """A PNG whose header claims side x side pixels (a few bytes of data follow)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _score(tmp_path, cache_dir, overrides: list[str]) -> tuple[dict, Path]:
    cfg = compose_config("score", overrides, tmp_path / "run", cache_dir)
    return score(cfg), Path(cfg.output)


def test_checkpoint_carries_its_eval_transform_and_mos_scale(checkpoint):
    stored = torch.load(checkpoint, map_location="cpu", weights_only=True)["iqa_lab_scoring"]
    synthetic = stored["databases"]["synthetic"]
    assert synthetic["mos_range"] == [1.0, 5.0] and synthetic["lower_better"] is False
    assert synthetic["eval_transform"]["crop_size"] is None
    assert stored["collate"] == "stack"
    assert load_iqa_module(str(checkpoint)).scoring_recipe == stored


def test_scores_equal_iqamodule_score_on_the_same_preprocessed_images(
    checkpoint, tmp_path, cache_dir
):
    photos = _photos(tmp_path / "photos")
    summary, output = _score(
        tmp_path, cache_dir, [f"ckpt={checkpoint}", f"inputs={tmp_path / 'photos'}", "batch_size=2"]
    )
    assert summary["scored"] == 3 and summary["failed"] == 0 and summary["images_per_s"] > 0
    table = pd.read_csv(output)
    assert list(table.columns) == ["path", "score", "score_01", "error"]
    assert table["path"].tolist() == [str(p) for p in sorted(photos)]
    model = load_iqa_module(str(checkpoint)).eval()
    recipe = model.scoring_recipe["databases"]["synthetic"]
    transform = build_transform("test", **recipe["eval_transform"])
    images = torch.stack([transform(image=load_rgb(p))["image"] for p in table["path"]])
    with torch.inference_mode():
        expected = model.score(images).numpy()
    np.testing.assert_allclose(table["score_01"], expected, atol=1e-5)
    np.testing.assert_allclose(table["score"], 1 + 4 * expected, atol=1e-4)  # MOS scale 1-5
    assert table["error"].isna().all()

    # tta=flip: the mean of each image's score and its mirror's, as a (B, 2, C, H, W) batch
    _, flipped_output = _score(
        tmp_path,
        cache_dir,
        [
            f"ckpt={checkpoint}",
            f"inputs={tmp_path / 'photos'}",
            "tta=flip",
            f"output={tmp_path / 'flip.json'}",
        ],
    )
    with torch.inference_mode():
        mirrored = model.score(images.flip(-1)).numpy()
    rows = json.loads(flipped_output.read_text())["scores"]
    got = np.array([row["score_01"] for row in rows])
    np.testing.assert_allclose(got, (expected + mirrored) / 2, atol=1e-5)
    assert not np.allclose(expected, mirrored, atol=1e-6)  # the recipe changed something


def test_folder_with_a_corrupt_jpg_scores_the_rest_names_it_and_exits_non_zero(
    checkpoint, tmp_path
):
    folder = tmp_path / "photos"
    _photos(folder)
    (folder / "broken.jpg").write_bytes(jpeg_bytes(pattern(SIDE, SIDE))[:300])  # cut short
    output = tmp_path / "scores.csv"
    done = run_app(
        "score",
        [
            f"ckpt={checkpoint}",
            f"inputs={folder}",
            f"output={output}",
        ],
        tmp_path / "run",
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "3 of 4 images scored" in done.stdout and "img/s" in done.stdout
    assert f"{folder / 'broken.jpg'}:" in done.stdout
    table = pd.read_csv(output).set_index("path")
    broken = table.loc[str(folder / "broken.jpg")]
    assert np.isnan(broken["score"]) and "Truncated File Read" in broken["error"]
    good = table.drop(index=str(folder / "broken.jpg"))
    assert len(good) == 3 and good["error"].isna().all()
    assert good["score"].between(0, 6).all()


def test_csv_of_paths_relative_to_the_csv_and_json_output(checkpoint, tmp_path, cache_dir):
    photos = _photos(tmp_path / "photos")
    listing = tmp_path / "lists" / "todo.csv"
    listing.parent.mkdir()
    names = [os.path.relpath(p, listing.parent) for p in photos] + ["../photos/missing.png"]
    pd.DataFrame({"image": names, "note": "x"}).to_csv(listing, index=False)
    output = tmp_path / "out" / "s.json"
    summary, _ = _score(
        tmp_path, cache_dir, [f"ckpt={checkpoint}", f"inputs={listing}", f"output={output}"]
    )
    result = json.loads(output.read_text())
    assert result["about"]["mos_range"] == [1.0, 5.0] and result["about"]["database"] == "synthetic"
    rows = result["scores"]
    assert [row["path"] for row in rows] == [str(listing.parent / n) for n in names]
    assert all(row["error"] is None and np.isfinite(row["score"]) for row in rows[:3])
    assert rows[3]["score"] is None and "file not found" in rows[3]["error"]
    assert summary["failed"] == 1 and summary["scored"] == 3


def test_classical_metric_by_name(tmp_path, cache_dir):
    photos = _photos(tmp_path / "photos")
    summary, output = _score(
        tmp_path, cache_dir, ["metric=brisque_live", f"inputs={tmp_path / 'photos'}"]
    )
    table = pd.read_csv(output)
    expected = [classical.score("brisque_live", p) for p in sorted(photos)]
    np.testing.assert_allclose(table["score"], expected, rtol=1e-6)
    assert table["score_01"].isna().all() and summary["failed"] == 0


def test_full_reference_metric_matches_references_by_file_name(tmp_path, cache_dir):
    references = _photos(tmp_path / "pristine")
    rng = np.random.default_rng(0)
    distorted = {}
    for ref in references[:2]:  # the third has no distorted version; one distorted has no ref
        noisy = load_rgb(ref).astype(int) + rng.integers(-20, 21, (SIDE, SIDE, 3))
        distorted[ref.name] = png_bytes(noisy.clip(0, 255).astype(np.uint8))
    distorted["orphan.png"] = png_bytes(pattern(SIDE, SIDE, seed=9))
    plant(tmp_path / "distorted", distorted)
    summary, output = _score(
        tmp_path,
        cache_dir,
        [
            "metric=psnr",
            f"inputs={tmp_path / 'distorted'}",
            f"reference={tmp_path / 'pristine'}",
        ],
    )
    table = pd.read_csv(output).set_index("path")
    orphan = table.loc[str(tmp_path / "distorted" / "orphan.png")]
    assert np.isnan(orphan["score"]) and "no reference named orphan.png" in orphan["error"]
    for ref in references[:2]:
        path = tmp_path / "distorted" / ref.name
        expected = classical.score("psnr", path, ref)  # RGB, peak 255
        assert table.loc[str(path), "score"] == pytest.approx(expected, rel=1e-5)
        assert 15 < expected < 40  # dB
    assert summary["scored"] == 2 and summary["failed"] == 1


def test_a_40000_px_bomb_header_is_refused_in_under_a_second(checkpoint, tmp_path, cache_dir):
    folder = tmp_path / "photos"
    plant(folder, {"bomb.png": _bomb_png()})
    start = time.perf_counter()
    with pytest.raises(Exception, match="decompression bomb"):
        load_rgb(folder / "bomb.png", 100_000_000)
    assert time.perf_counter() - start < 1.0
    summary, output = _score(tmp_path, cache_dir, [f"ckpt={checkpoint}", f"inputs={folder}"])
    assert summary["failed"] == 1 and summary["scored"] == 0 and summary["seconds"] < 1.0
    table = pd.read_csv(output).set_index("path")
    reason = table.loc[str(folder / "bomb.png"), "error"]
    assert reason.startswith("refused as a decompression bomb") and "raise max_pixels" in reason


def test_recipe_of_a_mixed_run_keeps_its_training_databases_and_needs_a_choice():
    def member(name, mos_range, lower_better):
        return SimpleNamespace(
            name=name,
            transform_cfg={"eval": {"crop_size": 32, "resize": ListConfig([40, 40])}},
            mos_range=mos_range,
            lower_better=lower_better,
            synthetic_labels=False,
        )

    mixed = SimpleNamespace(
        name="mixed",
        databases={
            "a": member("a", (1, 5), False),
            "b": member("b", (0, 100), True),
            "c": member("c", (0, 1), False),
        },
        training_databases=["a", "b"],  # c: tested only
        collate=SimpleNamespace(mode="stack"),
    )
    recipe = scoring_recipe(mixed)
    assert list(recipe["databases"]) == ["a", "b"]
    assert recipe["databases"]["b"]["eval_transform"] == {"crop_size": 32, "resize": [40, 40]}
    assert type(recipe["databases"]["b"]["eval_transform"]["resize"]) is list  # plain containers
    with pytest.raises(ConfigError, match=r"database=<one of them>"):
        database_recipe(recipe, None, "x.ckpt")
    name, part = database_recipe(recipe, "b", "x.ckpt")
    assert name == "b" and part["lower_better"] is True
    # DMOS-like scale (lower = better) mapped back: 0.25 on [0, 1] is 75 on 0-100
    assert published_scale(0.25, part["mos_range"], part["lower_better"]) == pytest.approx(75.0)
    assert normalise_mos(75.0, (0, 100), True) == pytest.approx(0.25)
    with pytest.raises(ConfigError, match="no scoring recipe"):
        database_recipe(None, None, "old.ckpt")
