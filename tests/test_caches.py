"""A cache that cannot be read (cut short by a crash, garbage) is rebuilt with a warning naming
it, and replaced by a whole one; it never breaks the calls after it."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iqa_lab import progress
from iqa_lab.classical import niqe
from iqa_lab.classical.cache import FeatureCache
from iqa_lab.data.leakage import PixelHashCache
from iqa_lab.data.near_duplicates import NearDuplicateSettings, ThumbnailCache, find_near_duplicates
from iqa_lab.models.classical import _pristine_model
from tests.planted import noise_images


def _half_written(path: Path, whole: bytes | None = None) -> Path:
    """``path`` holding the first half of ``whole`` (or bytes no reader accepts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(whole[: len(whole) // 2] if whole else b"PK\x03\x04 cut short")
    return path


def _images(folder: Path, count: int = 3) -> list[Path]:
    return noise_images(folder, [f"{i}.png" for i in range(count)], 24, 24)


def _rebuilt(caplog, path: Path) -> None:
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith(f"{path}: the cache cannot be read") for m in warned), warned
    assert any(m.endswith("; rebuilding it") for m in warned)


def test_a_half_written_feature_cache_is_rebuilt(tmp_path, caplog):
    files = _images(tmp_path)
    compute = lambda path: np.array([float(path.stat().st_size), 1.0])  # noqa: E731
    cache = FeatureCache(tmp_path / "cache", "brisque_v1", tmp_path)
    expected = cache.features(files, compute)
    _half_written(cache.path, cache.path.read_bytes())
    with caplog.at_level(logging.WARNING):
        again = FeatureCache(tmp_path / "cache", "brisque_v1", tmp_path)
    _rebuilt(caplog, cache.path)
    assert again.store == {}
    assert np.array_equal(again.features(files, compute), expected) and again.computed == 3
    # ... and the rebuilt file is whole: the next call reads it and computes nothing.
    third = FeatureCache(tmp_path / "cache", "brisque_v1", tmp_path)
    assert np.array_equal(third.features(files, compute), expected) and third.computed == 0


def test_a_half_written_niqe_pristine_model_is_refitted(tmp_path, caplog):
    """NIQE's pristine model used to be written in place: a crash mid-write broke every later
    call until the file was deleted by hand."""
    tag = "test_p48"
    path = tmp_path / "classical" / f"niqe_v{niqe.VERSION}_pristine_test_p48.npz"
    _half_written(path)
    with caplog.at_level(logging.WARNING):
        model = _pristine_model(48, 0.75, ("coffee",), str(tmp_path), tag)
    _rebuilt(caplog, path)
    assert model["mu"].shape == (36,) and model["cov"].shape == (36, 36)
    with np.load(path) as saved:  # replaced by the refitted model
        assert np.array_equal(saved["mu"], model["mu"])
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_a_half_written_thumbnail_cache_is_rebuilt(tmp_path, caplog):
    files = _images(tmp_path)
    expected = ThumbnailCache(tmp_path / "cache", 8).thumbnails(files, workers=1)
    path = _half_written(
        tmp_path / "cache" / "thumbnails_8.npz",
        (tmp_path / "cache" / "thumbnails_8.npz").read_bytes(),
    )
    with caplog.at_level(logging.WARNING):
        cache = ThumbnailCache(tmp_path / "cache", 8)
    _rebuilt(caplog, path)
    assert np.array_equal(cache.thumbnails(files, workers=1), expected) and cache.known


def test_a_garbled_pixel_hash_cache_is_rebuilt(tmp_path, caplog):
    files = _images(tmp_path)
    expected = PixelHashCache(tmp_path / "cache").hashes(files, workers=1)
    path = tmp_path / "cache" / "pixel_hashes.csv"
    path.write_text("path,size\n/x,notanumber\n")  # a row cut short
    with caplog.at_level(logging.WARNING):
        cache = PixelHashCache(tmp_path / "cache")
    _rebuilt(caplog, path)
    assert cache.hashes(files, workers=1) == expected
    assert PixelHashCache(tmp_path / "cache").known.keys() == cache.known.keys()


def test_a_half_written_near_duplicate_pairs_cache_is_rebuilt(tmp_path, caplog):
    files = _images(tmp_path)
    twin = tmp_path / "twin.png"
    pixels = np.asarray(Image.open(files[0])).copy()
    pixels[0, 0] ^= 1  # the same picture, one pixel apart
    Image.fromarray(pixels).save(twin)
    settings = NearDuplicateSettings(
        enabled=True, thumbnail_size=8, min_correlation=0.95, min_psnr=30.0, block=64
    )
    expected = find_near_duplicates(
        [*files, twin], settings, cache_dir=tmp_path / "cache", workers=1
    )
    assert len(expected) == 1
    (pairs_file,) = (tmp_path / "cache" / "near_duplicates").iterdir()
    pairs_file.write_text("a,b,corr")  # header cut short, no rows
    with caplog.at_level(logging.WARNING):
        again = find_near_duplicates(
            [*files, twin], settings, cache_dir=tmp_path / "cache", workers=1
        )
    _rebuilt(caplog, pairs_file)
    assert again.equals(expected)


@pytest.mark.parametrize("content", [b"", b"not a zip at all"])
def test_read_cache_returns_none_for_what_cannot_be_read(tmp_path, caplog, content):
    from iqa_lab.files import read_cache

    path = tmp_path / "x.npz"
    assert read_cache(path, np.load) is None and not caplog.records  # absent: silently None
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        assert read_cache(path, lambda p: dict(np.load(p))) is None
    _rebuilt(caplog, path)


def test_the_leakage_guard_hashes_show_progress_only_when_they_compute(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("IQA_LAB_PROGRESS", "1")  # stderr is not a terminal here
    monkeypatch.setattr(progress, "DELAY", 0.0)
    files = _images(tmp_path, count=4)
    PixelHashCache(tmp_path / "cache").hashes(files, workers=2)
    lines = capsys.readouterr().err.splitlines()
    rate = r"\d[\d.]* (images/s|s per image), elapsed \d+s"
    assert len(lines) == 2, lines
    assert re.fullmatch(rf"pixel hashes: 1/4 images \(25%\), {rate}, ETA \d+s", lines[0])
    assert re.fullmatch(rf"pixel hashes: 4/4 images \(100%\), {rate}", lines[1])
    PixelHashCache(tmp_path / "cache").hashes(files, workers=2)  # all cached: nothing to show
    assert capsys.readouterr().err == ""
