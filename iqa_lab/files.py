"""Atomic writes: a file appears whole or not at all, never half-written; and caches that heal.

Every writer of the project's outputs, caches and label files writes through here: the new content
goes to a temporary sibling, is flushed to disk (``fsync``), then renamed over the target in one
step, so a crash or a power loss leaves the old file or the new one, whole. Caches are read through
``read_cache``: one that cannot be read is rebuilt, with a warning. Nothing in this module imports
from iqa_lab.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

_serial = itertools.count()
_TEMPORARY = re.compile(r"\.\d+-\d+\.tmp(\.[^.]*)?$")
T = TypeVar("T")


def temporary_sibling(path: str | Path) -> Path:
    """A fresh name beside ``path`` that keeps its suffix (``name.<pid>-<n>.tmp.npz``): numpy,
    pandas and matplotlib pick the format from it, and parallel writers never share one."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{os.getpid()}-{next(_serial)}.tmp{path.suffix}")


def is_temporary(path: str | Path) -> bool:
    """Whether ``path`` is a ``temporary_sibling`` (a write in progress, or left by a crash)."""
    return _TEMPORARY.search(Path(path).name) is not None


def flush_to_disk(path: Path) -> None:
    """``fsync`` a written file: without it a rename may reach the disk before the data, and a
    power loss would leave the new name on an empty or partial file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write to; when the block succeeds it is flushed
    to disk and replaces ``path`` in one rename, when it fails it is removed and ``path`` is left
    as it was."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        flush_to_disk(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def read_cache(path: str | Path | None, read: Callable[[Path], T]) -> T | None:
    """``read(path)``, or None when there is no cache at ``path`` or it cannot be read (truncated,
    written by a crashed older version, not the expected format): the caller then rebuilds it,
    and a warning names the file. ``read`` must read everything it returns (no lazy handles)."""
    if path is None or not Path(path).is_file():
        return None
    try:
        return read(Path(path))
    except Exception as err:  # noqa: BLE001 — any unreadable cache is rebuilt, never fatal
        log.warning(
            "%s: the cache cannot be read (%s: %s); rebuilding it", path, type(err).__name__, err
        )
        return None


def file_key(path: str | Path) -> tuple[str, int, int] | None:
    """``(absolute path, size, mtime in ns)`` of a file, the key of per-file caches (a changed
    file gets a new key); None when it cannot be read."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns
