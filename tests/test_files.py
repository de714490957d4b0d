"""Atomic writes: a file appears whole, a failed write leaves the old one and no temporary file."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import iqa_lab.files
from iqa_lab.files import atomic_path, atomic_write_text, is_temporary, temporary_sibling


def test_the_file_appears_whole_and_alone(tmp_path):
    target = tmp_path / "results.json"
    assert atomic_write_text(target, "{}\n") == target
    assert target.read_text() == "{}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_the_temporary_sibling_keeps_the_format_suffix(tmp_path):
    target = tmp_path / "features.npz"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".npz" and is_temporary(tmp)
        assert not target.exists()
        np.savez(tmp, values=np.arange(3))  # numpy would append .npz to any other suffix
    with np.load(target) as data:
        assert data["values"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.npz"]
    assert not is_temporary(target)


def test_a_failure_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "table.md"
    target.write_text("old\n")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_writers_never_share_a_temporary_name(tmp_path):
    names = {temporary_sibling(tmp_path / "labels.csv") for _ in range(3)}
    assert len(names) == 3 and all(p.suffix == ".csv" for p in names)


def test_the_module_imports_nothing_from_iqa_lab():
    tree = ast.parse(Path(iqa_lab.files.__file__).read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    assert not [name for name in imported if name and name.startswith("iqa_lab")]
