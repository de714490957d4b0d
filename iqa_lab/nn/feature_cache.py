"""An on-disk store of a frozen network's outputs, one fixed-shape row per (image, view).

A store is one folder under ``<cache_dir>/features/``, named by the digest of its *set key*: what
decides every row's values apart from the image (backbone, its weights' digest, the frozen stage,
the transform, the storage dtype, the library versions). Inside, rows are keyed by the *item key*:
the image's content hash (SHA-256 of the file's bytes), its crop box if any, and the view number.
Change any part and the lookup misses: a new folder for a set-key part, a new row for an item part.

Files: ``meta.json`` (the set key in clear, row shape and dtype), ``rows.bin`` (rows appended in
C order, flushed to disk) and ``index.json`` (item key → row), replaced atomically after each
append: a run killed while writing leaves rows beyond the index, which the next open cuts off. A
store whose files cannot be read (or whose rows fall short of its index) starts afresh, with a
warning naming it.

Reading (``FeatureRows``) loads the rows into memory when they fit the given budget, and
otherwise reads them from disk through a memory map (the page cache, not the process, holds
them), so a cache larger than RAM still trains.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from iqa_lab.errors import ConfigError
from iqa_lab.files import atomic_write_text, flush_to_disk, read_cache

log = logging.getLogger(__name__)
DTYPES = ("float16", "float32")


def digest(value) -> str:
    """SHA-256 of a JSON-serialisable value (keys sorted)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def file_content_hash(path: str | Path) -> str:
    """SHA-256 of a file's bytes: the image part of every item key."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def weights_digest(modules: Sequence[nn.Module]) -> str:
    """SHA-256 over every parameter and buffer of ``modules`` (names, shapes and values)."""
    sha = hashlib.sha256()
    for position, module in enumerate(modules):
        for name, tensor in module.state_dict().items():
            sha.update(f"{position}.{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            sha.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return sha.hexdigest()


def item_key(content_hash: str, view: int, box: Sequence[float] | None = None) -> str:
    """One row's key within a store: image content, crop box (records that have one), view."""
    where = "" if box is None else ",".join(str(int(v)) for v in box)
    return f"{content_hash}:{where}:{view}"


class FeatureStore:
    """The rows of one set key under ``root`` (see the module docstring)."""

    def __init__(self, root: str | Path, set_key: dict, dtype: str = "float16"):
        if dtype not in DTYPES:
            raise ConfigError(f"feature cache dtype must be one of {DTYPES}, got '{dtype}'")
        self.set_key = {**set_key, "dtype": dtype}
        self.dtype = np.dtype(dtype)
        self.folder = Path(root) / digest(self.set_key)[:24]
        self.shape: tuple[int, ...] | None = None
        self.index: dict[str, int] = {}
        self._open()

    @property
    def rows_path(self) -> Path:
        return self.folder / "rows.bin"

    def _open(self) -> None:
        meta_path, index_path = self.folder / "meta.json", self.folder / "index.json"
        if not meta_path.is_file():
            return
        meta = read_cache(meta_path, lambda p: tuple(json.loads(p.read_text())["shape"]))
        index = read_cache(index_path, lambda p: dict(json.loads(p.read_text())))
        on_disk = self.rows_path.stat().st_size if self.rows_path.is_file() else 0
        if meta is None or (index is None and on_disk):
            self._start_afresh("its meta.json or index.json cannot be read")
            return
        self.shape, self.index = meta, index or {}
        size = len(self.index) * self.row_bytes
        if on_disk < size:
            self._start_afresh(f"rows.bin holds {on_disk} bytes, its index needs {size}")
        elif on_disk > size:
            with open(self.rows_path, "r+b") as handle:  # rows of an interrupted append
                handle.truncate(size)

    def _start_afresh(self, why: str) -> None:
        log.warning("feature cache %s: %s; rebuilding it", self.folder, why)
        for name in ("index.json", "meta.json", "rows.bin"):
            (self.folder / name).unlink(missing_ok=True)
        self.shape, self.index = None, {}

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize if self.shape else 0

    def __len__(self) -> int:
        return len(self.index)

    def missing(self, keys: Sequence[str]) -> list[str]:
        return [key for key in keys if key not in self.index]

    def add(self, keys: Sequence[str], rows: np.ndarray) -> None:
        """Append ``rows`` (one per key, all of one shape) and record them. A key already stored,
        or repeated in ``keys`` (two images with the same content), is written once: row numbers
        count the rows in ``rows.bin``."""
        first = {}
        for j, key in enumerate(keys):
            if key not in self.index:
                first.setdefault(key, j)
        keys, rows = list(first), np.asarray(rows)[list(first.values())]
        if not keys:
            return
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if self.shape is None:
            self.shape = tuple(rows.shape[1:])
            self.folder.mkdir(parents=True, exist_ok=True)
            meta = {"set_key": self.set_key, "shape": list(self.shape)}
            atomic_write_text(self.folder / "meta.json", json.dumps(meta, indent=1))
        if tuple(rows.shape[1:]) != self.shape:
            raise ConfigError(
                f"feature cache {self.folder}: a row of shape {tuple(rows.shape[1:])} after rows "
                f"of shape {self.shape}; cached features need one input size per transform "
                f"(set data.transforms crop_size or resize)"
            )
        start = len(self.index)
        with open(self.rows_path, "ab") as handle:
            handle.write(rows.tobytes())
        flush_to_disk(self.rows_path)  # the rows reach the disk before the index names them
        for offset, key in enumerate(keys):
            self.index[key] = start + offset
        atomic_write_text(self.folder / "index.json", json.dumps(self.index))

    def rows(self, keys: Sequence[str]) -> np.ndarray:
        """The row numbers of ``keys`` (all present)."""
        return np.array([self.index[key] for key in keys], dtype=np.int64)

    def nbytes(self) -> int:
        return len(self.index) * self.row_bytes

    def reader(self, in_memory: bool) -> FeatureRows:
        return FeatureRows(self.rows_path, len(self.index), self.shape, self.dtype, in_memory)


class FeatureRows:
    """Row access to a store's ``rows.bin``: an array in memory, or a memory map opened lazily in
    each process (a DataLoader worker opens its own, nothing large is pickled)."""

    def __init__(self, path: Path, count: int, shape, dtype, in_memory: bool):
        self.path, self.count, self.shape, self.dtype = Path(path), count, tuple(shape), dtype
        self.in_memory = in_memory
        self._rows: np.ndarray | None = None
        if in_memory:
            size = count * int(np.prod(self.shape))
            self._rows = np.fromfile(self.path, dtype=dtype, count=size).reshape(count, *self.shape)

    @property
    def rows(self) -> np.ndarray:
        if self._rows is None:
            self._rows = np.memmap(
                self.path, dtype=self.dtype, mode="r", shape=(self.count, *self.shape)
            )
        return self._rows

    def __getitem__(self, row: int) -> np.ndarray:
        return np.array(self.rows[row], dtype=np.float32)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if not self.in_memory:
            state["_rows"] = None
        return state
