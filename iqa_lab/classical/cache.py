"""Per-image feature cache: repeats and tables over the same images compute features once.

One ``.npz`` per (feature extractor, database folder) under ``<cache_dir>/classical/``; an image's
entry is keyed by its absolute path, modification time and size, so an edited file is recomputed.
The file is replaced atomically; one that cannot be read is rebuilt, with a warning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from iqa_lab.files import atomic_path, read_cache

SAVE_EVERY = 500


def file_key(path: str | Path) -> str:
    path = Path(path).resolve()
    stat = path.stat()
    return f"{path}|{stat.st_mtime_ns}|{stat.st_size}"


def _read_store(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return dict(zip(data["keys"].tolist(), data["values"]))


class FeatureCache:
    """Feature vectors of image files for one extractor (``name`` names the extractor and its
    settings: change either and the cache starts afresh)."""

    def __init__(self, cache_dir: str | Path | None, name: str, scope: str | Path):
        self.path = None
        if cache_dir is not None:
            digest = hashlib.sha1(str(Path(scope).resolve()).encode()).hexdigest()[:12]
            self.path = Path(cache_dir) / "classical" / f"{name}_{digest}.npz"
        self.store: dict[str, np.ndarray] = read_cache(self.path, _read_store) or {}
        self.computed = 0

    def features(
        self, paths: Sequence[str | Path], compute: Callable[[Path], np.ndarray]
    ) -> np.ndarray:
        """``(len(paths), D)`` features, computing (and remembering) only the missing ones."""
        before = self.computed
        rows = [self.get(path, compute) for path in paths]
        if self.computed > before:
            self.save()
        return np.stack(rows) if rows else np.empty((0, 0))

    def missing(self, paths: Sequence[str | Path]) -> list[Path]:
        """The files of ``paths`` without features yet (new, or changed since)."""
        return [Path(p) for p in paths if file_key(p) not in self.store]

    def put(self, path: str | Path, value: np.ndarray) -> None:
        """Remember one file's features, computed elsewhere (saved as ``get`` saves)."""
        self.store[file_key(path)] = np.asarray(value, dtype=np.float64)
        self.computed += 1
        if self.computed % SAVE_EVERY == 0:
            self.save()

    def get(self, path: str | Path, compute: Callable[[Path], np.ndarray]) -> np.ndarray:
        """One file's features (saved every ``SAVE_EVERY`` new ones; call ``save`` at the end)."""
        key = file_key(path)
        if key not in self.store:  # saved every SAVE_EVERY: a long pass survives an interruption
            self.put(path, compute(Path(path)))
        return self.store[key]

    def save(self) -> None:
        if self.path is None or not self.store:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            np.savez(
                tmp, keys=np.array(list(self.store)), values=np.stack(list(self.store.values()))
            )
