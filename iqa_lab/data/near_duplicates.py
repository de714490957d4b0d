"""Near-duplicate images: two files of one database that show the same photo with slightly
different pixels (a re-encode, a resize, a small crop or colour change), which the exact-pixel
guard (``data.leakage``) does not see. Real databases hold many (BIQ2021: hundreds of pairs with
near-identical MOS), and a split that puts one on each side tests the model on pictures it saw.

Two steps, thresholds in ``conf/data/_defaults.yaml`` (``data.near_duplicates``):

1. candidates: the Pearson correlation of small grayscale thumbnails
   (``thumbnail_size`` x ``thumbnail_size``, area-averaged) is at least ``min_correlation``. The
   search runs block by block (``block`` x ``block`` correlations at a time), so 40k images never
   need an n x n matrix. Thumbnails are cached per file (path, size, mtime) under the cache folder;
2. confirmation: the PSNR of the two images at full resolution (the larger resized to the smaller
   when their sizes differ) is at least ``min_psnr`` dB. Identical pixels (infinite PSNR) are not
   near-duplicates: the exact-pixel guard refuses them.

The confirmed pairs of a database are cached too, keyed by its files (path, size, mtime) and the
thresholds. A file that cannot be decoded is left out (the bad-input policy reports it). Pairs
within one group (``ref``: the distortions of one reference photo) are not searched: splits keep a
reference's images together already.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from iqa_lab.data.images import BadImageError, load_rgb
from iqa_lab.errors import ConfigError
from iqa_lab.files import atomic_path, file_key, read_cache
from iqa_lab.progress import track

log = logging.getLogger(__name__)

PAIR_COLUMNS = ["a", "b", "correlation", "psnr"]


@dataclass(frozen=True)
class NearDuplicateSettings:
    """``data.near_duplicates`` (conf/data/_defaults.yaml)."""

    enabled: bool
    thumbnail_size: int
    min_correlation: float
    min_psnr: float
    block: int

    def __post_init__(self):
        if self.thumbnail_size < 2:
            raise ConfigError(
                f"data.near_duplicates.thumbnail_size must be >= 2, got {self.thumbnail_size}"
            )
        if not -1 <= self.min_correlation <= 1:
            raise ConfigError(
                "data.near_duplicates.min_correlation must be in [-1, 1], got "
                f"{self.min_correlation}"
            )
        if self.block < 1:
            raise ConfigError(f"data.near_duplicates.block must be >= 1, got {self.block}")


def thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` area-averaged grayscale thumbnail of an RGB array, centred and scaled
    to unit norm (so the dot product of two is their Pearson correlation; all zeros when flat)."""
    gray = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    small = np.asarray(
        Image.fromarray(gray, mode="F").resize((size, size), Image.Resampling.BOX),
        dtype=np.float64,
    ).ravel()
    small -= small.mean()
    norm = np.linalg.norm(small)
    return (small / norm if norm > 1e-6 else np.zeros_like(small)).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 RGB arrays; the larger is resized to the smaller when they differ."""
    if a.shape != b.shape:
        if a.shape[0] * a.shape[1] < b.shape[0] * b.shape[1]:
            a, b = b, a
        height, width = b.shape[:2]
        a = np.asarray(Image.fromarray(a).resize((width, height), Image.Resampling.BOX))
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _read_thumbnails(path: Path) -> dict[tuple[str, int, int], np.ndarray]:
    with np.load(path) as saved:
        return {
            (str(p), int(s), int(m)): t
            for p, s, m, t in zip(saved["path"], saved["size"], saved["mtime_ns"], saved["thumb"])
        }


class ThumbnailCache:
    """Normalised thumbnails of files keyed by (absolute path, size, mtime): an ``.npz`` under
    ``cache_dir`` (one per thumbnail size)."""

    def __init__(self, cache_dir: str | Path | None, size: int):
        self.size = size
        self.path = Path(cache_dir).expanduser() / f"thumbnails_{size}.npz" if cache_dir else None
        self.known: dict[tuple[str, int, int], np.ndarray] = (
            read_cache(self.path, _read_thumbnails) or {}
        )
        self.added = 0

    def thumbnails(self, paths: list[Path], workers: int | None = None) -> np.ndarray:
        """One row per path (NaN rows for files that cannot be decoded)."""
        keys = [file_key(p) for p in paths]
        todo = [i for i, k in enumerate(keys) if k is not None and k not in self.known]

        def compute(i: int) -> np.ndarray | None:
            try:
                return thumbnail(load_rgb(paths[i]), self.size)
            except BadImageError:
                return None  # unreadable files are the bad-input policy's business

        if todo:
            log.info("thumbnails of %d images for the near-duplicate pass (cached)", len(todo))
            with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
                made = pool.map(compute, todo)
                # The progress first: zip then resumes it after the last image, which it counts.
                for value, i in zip(
                    track(made, "near-duplicate thumbnails", len(todo), "images"), todo
                ):
                    if value is not None:
                        self.known[keys[i]] = value
                        self.added += 1
            self.save()
        missing = np.full(self.size * self.size, np.nan, np.float32)
        rows = [self.known.get(k, missing) if k else missing for k in keys]
        return np.stack(rows) if rows else np.empty((0, missing.size), np.float32)

    def save(self) -> None:
        if self.path is None or not self.added:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self.known)
        with atomic_path(self.path) as tmp, open(tmp, "wb") as out:
            np.savez(
                out,
                path=np.array([k[0] for k in keys]),
                size=np.array([k[1] for k in keys], np.int64),
                mtime_ns=np.array([k[2] for k in keys], np.int64),
                thumb=np.stack([self.known[k] for k in keys]),
            )
        self.added = 0


def candidate_pairs(
    thumbs: np.ndarray, min_correlation: float, block: int
) -> list[tuple[int, int, float]]:
    """``(i, j, correlation)`` with i < j for rows whose correlation reaches ``min_correlation``,
    computed ``block`` x ``block`` at a time. NaN or flat rows (all zeros) never pair."""
    usable = np.isfinite(thumbs).all(axis=1) & (np.abs(thumbs).sum(axis=1) > 0)
    rows = np.flatnonzero(usable)
    x = thumbs[rows]
    pairs = []
    for start in range(0, len(x), block):
        left = x[start : start + block]
        for other in range(start, len(x), block):
            corr = left @ x[other : other + block].T
            i, j = np.nonzero(corr >= min_correlation)
            keep = start + i < other + j
            pairs.extend(
                (int(rows[start + a]), int(rows[other + b]), float(corr[a, b]))
                for a, b in zip(i[keep], j[keep])
            )
    return sorted(pairs)


def confirm(paths: list[Path], candidates, min_psnr: float, workers: int | None = None):
    """The candidates whose full-resolution PSNR is finite and at least ``min_psnr``:
    ``(i, j, correlation, psnr)``."""

    def measure(candidate) -> float | None:
        i, j, _ = candidate
        try:
            return psnr(load_rgb(paths[i]), load_rgb(paths[j]))
        except BadImageError:
            return None

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        values = list(pool.map(measure, candidates))
    return [
        (i, j, corr, value)
        for (i, j, corr), value in zip(candidates, values)
        if value is not None and np.isfinite(value) and value >= min_psnr
    ]


def _pairs_cache_file(
    cache_dir: str | Path, name: str, keys: list, settings: NearDuplicateSettings
) -> Path:
    # The files in order: the cached pairs name them by position.
    digest = hashlib.sha1(repr(([str(k) for k in keys], asdict(settings))).encode()).hexdigest()
    return Path(cache_dir).expanduser() / "near_duplicates" / f"{name}-{digest[:16]}.csv"


def _read_pairs(path: Path) -> list[tuple]:
    found = pd.read_csv(path)
    return [tuple(row) for row in found[PAIR_COLUMNS].itertuples(index=False)]


def find_near_duplicates(
    paths: list[str | Path],
    settings: NearDuplicateSettings,
    cache_dir: str | Path | None = None,
    name: str = "database",
    workers: int | None = None,
    groups: list | None = None,
) -> pd.DataFrame:
    """Confirmed near-duplicate pairs among the files ``paths`` (module docstring): columns ``a``
    and ``b`` (the paths as given, ``a`` listed first), ``correlation`` and ``psnr``; cached per
    ``name`` and its files. ``groups`` (one label per path, e.g. its ``ref``) skips pairs within a
    group: the distortions of one reference are near-duplicates that splits already keep together,
    and confirming them would cost hours on a synthetic database."""
    if groups is not None and len(groups) != len(paths):
        raise ValueError(f"{len(groups)} groups for {len(paths)} paths")
    group_of = dict(zip(map(Path, paths), groups if groups is not None else range(len(paths))))
    unique = list(group_of)
    keys = [(file_key(p), str(group_of[p]) if groups is not None else None) for p in unique]
    cached = _pairs_cache_file(cache_dir, name, keys, settings) if cache_dir else None
    pairs = read_cache(cached, _read_pairs)
    if pairs is None:
        thumbs = ThumbnailCache(cache_dir, settings.thumbnail_size).thumbnails(unique, workers)
        candidates = [
            (i, j, corr)
            for i, j, corr in candidate_pairs(thumbs, settings.min_correlation, settings.block)
            if groups is None or group_of[unique[i]] != group_of[unique[j]]
        ]
        if candidates:
            log.info("%s: %d near-duplicate candidates to confirm", name, len(candidates))
        pairs = confirm(unique, candidates, settings.min_psnr, workers)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cached) as tmp:
                pd.DataFrame(pairs, columns=PAIR_COLUMNS).to_csv(tmp, index=False)
    return pd.DataFrame(
        [(str(unique[int(i)]), str(unique[int(j)]), c, v) for i, j, c, v in pairs],
        columns=PAIR_COLUMNS,
    )


def merge_refs(refs: pd.Series, groups: list[list]) -> pd.Series:
    """``refs`` where the refs of each group's records (index labels) are joined into one (the
    smallest), through chains of groups too (union-find)."""
    parent: dict[str, str] = {}

    def root(ref: str) -> str:
        while parent.get(ref, ref) != ref:
            ref = parent[ref]
        return ref

    for group in groups:
        heads = sorted({root(str(refs[label])) for label in group})
        for head in heads[1:]:
            parent[head] = heads[0]
    return refs.astype(str).map(root)


def join_near_duplicates(
    records: pd.DataFrame, pairs: pd.DataFrame, official: bool = False
) -> pd.DataFrame:
    """``records`` where the two images of each pair (``db``, ``image_a``, ``image_b``) and every
    chain of pairs share one ``ref``, so a content-based split keeps them on one side. With
    ``official`` the database fixes the sides: only pairs within one official ``set`` are joined
    (validation is carved from training by ``ref``); the others are ``straddling_pairs``."""
    if pairs.empty:
        return records
    rows: dict[tuple, list] = {}
    for label, db, image in zip(records.index, records["db"], records["image"]):
        rows.setdefault((db, image), []).append(label)  # several records per file: patches
    groups = [
        rows[(db, a)] + rows[(db, b)]
        for db, a, b in zip(pairs["db"], pairs["image_a"], pairs["image_b"])
    ]
    if official:
        sets = records["set"].fillna("").astype(str).str.strip().str.lower()
        groups = [group for group in groups if sets[group].nunique() == 1]
    return records.assign(ref=merge_refs(records["ref"], groups))


def straddling_pairs(records: pd.DataFrame, pairs: pd.DataFrame) -> list[dict]:
    """The pairs with one image in ``test`` and the other in ``train`` / ``val`` (``records``
    carry ``split``), each with both images, its scores and both MOS (normalised)."""
    images = records.drop_duplicates(["db", "image"]).set_index(["db", "image"])
    found = []
    for pair in pairs.itertuples(index=False):
        a, b = (pair.db, pair.image_a), (pair.db, pair.image_b)
        if a not in images.index or b not in images.index:
            continue  # the protocol left one out (cross: a database on neither side)
        if (images.at[a, "split"] == "test") == (images.at[b, "split"] == "test"):
            continue
        test, train = (a, b) if images.at[a, "split"] == "test" else (b, a)
        found.append(
            {
                "db": pair.db,
                "test_image": test[1],
                "train_image": train[1],
                "train_split": images.at[train, "split"],
                "correlation": float(pair.correlation),
                "psnr": float(pair.psnr),
                "mos_test": round(float(images.at[test, "mos"]), 6),
                "mos_train": round(float(images.at[train, "mos"]), 6),
            }
        )
    return found
