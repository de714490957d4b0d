"""Atomic writes: a file appears whole or not at all, never half-written.

Every writer of the project's outputs, caches and label files writes through here. Nothing in this
module imports from iqa_lab.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_serial = itertools.count()
_TEMPORARY = re.compile(r"\.\d+-\d+\.tmp(\.[^.]*)?$")


def temporary_sibling(path: str | Path) -> Path:
    """A fresh name beside ``path`` that keeps its suffix (``name.<pid>-<n>.tmp.npz``): numpy,
    pandas and matplotlib pick the format from it, and parallel writers never share one."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{os.getpid()}-{next(_serial)}.tmp{path.suffix}")


def is_temporary(path: str | Path) -> bool:
    """Whether ``path`` is a ``temporary_sibling`` (a write in progress, or left by a crash)."""
    return _TEMPORARY.search(Path(path).name) is not None


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write to; when the block succeeds it replaces
    ``path`` in one rename, when it fails it is removed and ``path`` is left as it was."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
