"""The leakage guard: before any fit, no image file, no identical image and no reference may sit on
two sides of a split (train / val / test).

- same file: the same path, or two paths to one file (symlink, hard link, case-insensitive
  file system), compared by the file's device and inode;
- identical image: the same decoded pixels (a hash of the RGB array and its shape, so a PNG and a
  BMP of one image match while the file names differ). Hashes are cached per file (path, size,
  mtime) under the cache directory, so only the first run over a database pays for decoding;
- shared reference: one ``ref`` (reference photo / content id) in two splits.

``check_leakage`` raises ``LeakageError`` listing the offending items; nothing is fitted.

Near-duplicates (the same photo with slightly different pixels) are ``data.near_duplicates``'
business, before the split: under content-based protocols each pair shares one ``ref`` (so the
``ref`` check here keeps them together); under ``protocol=official`` the pairs that straddle test
and training are reported, not refused (the database fixes the sides).
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from iqa_lab.data.images import BadImageError, load_rgb
from iqa_lab.errors import IQALabError
from iqa_lab.files import atomic_path, file_key, read_cache
from iqa_lab.progress import track

log = logging.getLogger(__name__)

SHOWN = 10  # offending items listed per kind in the message


class LeakageError(IQALabError, ValueError):
    """Train / val / test share files, images or references."""


def pixel_hash(path: str | Path) -> str:
    """SHA-1 of the decoded RGB pixels and their shape (independent of the file format)."""
    image = load_rgb(path)
    digest = hashlib.sha1(str(image.shape).encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _read_hashes(path: Path) -> dict[tuple[str, int, int], str]:
    frame = pd.read_csv(path, dtype={"path": str, "hash": str})
    return {(r.path, int(r.size), int(r.mtime_ns)): r.hash for r in frame.itertuples(index=False)}


class PixelHashCache:
    """Pixel hashes of files keyed by (absolute path, size, mtime); a CSV under ``cache_dir``."""

    def __init__(self, cache_dir: str | Path | None):
        self.path = Path(cache_dir).expanduser() / "pixel_hashes.csv" if cache_dir else None
        self.known: dict[tuple[str, int, int], str] = read_cache(self.path, _read_hashes) or {}
        self.added = 0

    def hashes(self, paths: list[Path], workers: int | None = None) -> list[str | None]:
        """The pixel hash of each path (None for files that cannot be decoded)."""
        keys = [file_key(p) for p in paths]
        todo = [i for i, k in enumerate(keys) if k is not None and k not in self.known]

        def compute(i: int) -> str | None:
            try:
                return pixel_hash(paths[i])
            except BadImageError:
                return None  # unreadable files are the bad-input policy's business

        if todo:
            log.info(
                "hashing the pixels of %d images for the leakage guard (cached after)", len(todo)
            )
            with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
                made = pool.map(compute, todo)
                # The progress first: zip then resumes it after the last image, which it counts.
                for value, i in zip(track(made, "pixel hashes", len(todo), "images"), todo):
                    if value is not None:
                        self.known[keys[i]] = value
                        self.added += 1
            self.save()
        return [self.known.get(k) if k is not None else None for k in keys]

    def save(self) -> None:
        if self.path is None or not self.added:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(
            [(p, s, m, h) for (p, s, m), h in self.known.items()],
            columns=["path", "size", "mtime_ns", "hash"],
        )
        with atomic_path(self.path) as tmp:
            frame.to_csv(tmp, index=False)
        self.added = 0


def _crossing(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """Rows whose ``key`` value occurs in more than one split."""
    frame = frame[frame[key].notna()]
    splits_per_key = frame.groupby(key)["split"].nunique()
    shared = splits_per_key[splits_per_key > 1].index
    return frame[frame[key].isin(shared)]


def _describe(rows: pd.DataFrame, key: str, label: str) -> str:
    groups = rows.groupby(key)
    lines = [f"- {groups.ngroups} {label}:"]
    for i, (_, group) in enumerate(groups):
        if i == SHOWN:
            lines.append(f"  … and {groups.ngroups - SHOWN} more")
            break
        lines.append(
            "  "
            + "; ".join(f"{split}: {image}" for split, image in zip(group["split"], group["image"]))
        )
    return "\n".join(lines)


def find_leaks(
    records: pd.DataFrame,
    paths: pd.Series,
    cache_dir: str | Path | None = None,
    pixels: bool = True,
    cache: PixelHashCache | None = None,
) -> dict[str, pd.DataFrame]:
    """Offending rows per kind (``file``, ``pixels``, ``ref``); empty frames when clean.

    ``records`` carry ``image``, ``ref`` and ``split``; ``paths`` the absolute file of each row;
    ``cache`` a hash cache already filled (else one in ``cache_dir``)."""
    frame = records[["image", "ref", "split"]].copy()
    if "db" in records:
        frame["ref"] = records["db"].astype(str) + "/" + records["ref"].astype(str)
    files = [Path(p) for p in paths]
    frame["file_id"] = [_file_id(p) or f"missing:{p}" for p in files]
    leaks = {"file": _crossing(frame, "file_id"), "ref": _crossing(frame, "ref")}
    if pixels:
        frame["pixels"] = (cache or PixelHashCache(cache_dir)).hashes(files)
        leaks["pixels"] = _crossing(frame, "pixels")
    return leaks


def check_leakage(
    records: pd.DataFrame,
    paths: pd.Series,
    cache_dir: str | Path | None = None,
    pixels: bool = True,
    where: str = "",
    cache: PixelHashCache | None = None,
) -> None:
    """Raise ``LeakageError`` listing every file, identical image and reference that crosses
    train / val / test."""
    leaks = find_leaks(records, paths, cache_dir, pixels, cache)
    labels = {
        "file": ("file_id", "files in more than one split"),
        "pixels": ("pixels", "identical images (same decoded pixels) in more than one split"),
        "ref": ("ref", "references / contents in more than one split"),
    }
    parts = [
        _describe(rows, labels[kind][0], labels[kind][1])
        for kind, rows in leaks.items()
        if len(rows)
    ]
    if parts:
        raise LeakageError(
            f"the split of {where or 'this database'} leaks between train / val / test, so its "
            f"test numbers would not be held-out numbers:\n"
            + "\n".join(parts)
            + "\nFix the label file (remove duplicates, give copies of one photo the same ref) or "
            "use a protocol that keeps references together (protocol=content)."
        )
