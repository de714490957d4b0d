"""Atomic writes: a file appears whole, a failed write leaves the old one and no temporary file."""

from __future__ import annotations

import ast
import os
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


# Calls that write a file: named by their first argument, or by their last (json.dump, copies).
WRITERS = {"savez", "savez_compressed", "save", "savefig", "to_csv", "to_json", "to_parquet"}
RECEIVER_WRITERS = {"write_text", "write_bytes"}  # path.write_text(...)
LAST_ARGUMENT_WRITERS = {"dump", "copyfile", "copy", "copy2"}
# Writes that need no atomic_path, and why.
EXEMPT = {
    # build_synthetic writes into a temporary sibling folder and renames it into place.
    ("iqa_lab/data/synthetic.py", "save"),
    ("iqa_lab/data/synthetic.py", "to_csv"),
    ("iqa_lab/data/distortions.py", "save"),  # into an in-memory buffer
    # Feature-cache rows are appended in place; the index, written atomically after them, names
    # only complete rows and an interrupted append is cut off on the next open.
    ("iqa_lab/nn/feature_cache.py", "open"),
}


def _called(call: ast.Call) -> str:
    return call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")


def _atomic_names(with_node: ast.With, atomic: set[str]) -> set[str]:
    """Names a ``with`` binds to an atomic_path temporary, or to a file opened on one."""
    names = set(atomic)
    for item in with_node.items:
        call, target = item.context_expr, item.optional_vars
        if isinstance(call, ast.Call) and isinstance(target, ast.Name):
            first = call.args[0] if call.args else None
            on_temporary = isinstance(first, ast.Name) and first.id in names
            if _called(call) == "atomic_path" or (_called(call) == "open" and on_temporary):
                names.add(target.id)
    return names


def _written_file(call: ast.Call) -> ast.expr | None:
    """The argument naming the file ``call`` writes, or None when it writes no file."""
    name = _called(call)
    if name in WRITERS and call.args:
        return call.args[0]
    if name in RECEIVER_WRITERS and isinstance(call.func, ast.Attribute):
        return call.func.value
    if name in LAST_ARGUMENT_WRITERS and len(call.args) >= 2:
        return call.args[-1]
    mode = call.args[1] if len(call.args) > 1 else None
    if name == "open" and isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax"):
        return call.args[0]
    return None


def _unguarded_writes(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, call)`` of every file write not aimed at an atomic_path temporary."""
    found = []

    def visit(node: ast.AST, atomic: set[str]) -> None:
        if isinstance(node, ast.With):
            atomic = _atomic_names(node, atomic)
        if isinstance(node, ast.Call):
            target = _written_file(node)
            if target is not None and not (isinstance(target, ast.Name) and target.id in atomic):
                found.append((node.lineno, _called(node)))
        for child in ast.iter_child_nodes(node):
            visit(child, atomic)

    visit(tree, set())
    return found


def test_every_file_the_project_writes_goes_through_atomic_path():
    """Outputs, figures, tables and caches are written to a temporary sibling and renamed: a
    crash never leaves a half-written file that a later step reads (NIQE's pristine-model cache
    was written in place)."""
    root = Path(iqa_lab.files.__file__).resolve().parents[1]
    unguarded = [
        f"{path.relative_to(root).as_posix()}:{line} {name}(…)"
        for path in sorted((root / "iqa_lab").rglob("*.py"))
        for line, name in _unguarded_writes(ast.parse(path.read_text()))
        if (path.relative_to(root).as_posix(), name) not in EXEMPT
    ]
    assert unguarded == []


def test_the_guard_sees_a_write_in_place():
    tree = ast.parse(
        "with atomic_path(p) as tmp:\n    np.savez(tmp, a=1)\n"
        "with atomic_path(p) as tmp, open(tmp, 'wb') as out:\n    np.savez(out, a=1)\n"
        "np.savez(path, a=1)\nfig.savefig(p)\ntext = frame.to_csv(index=False)\n"
        "open(p, 'w')\nopen(p)\npath.write_text(text)\n"
    )
    assert _unguarded_writes(tree) == [
        (5, "savez"),
        (6, "savefig"),
        (8, "open"),
        (10, "write_text"),
    ]


def test_the_content_reaches_the_disk_before_the_rename(tmp_path, monkeypatch):
    """fsync before the rename: after a power loss the name never points at unwritten data."""
    target, events = tmp_path / "provenance.json", []
    real_fsync, real_replace = iqa_lab.files.os.fsync, Path.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(self, other):
        events.append(("rename", str(other)))
        return real_replace(self, other)

    monkeypatch.setattr(iqa_lab.files.os, "fsync", fsync)
    monkeypatch.setattr(Path, "replace", replace)
    atomic_write_text(target, "{}\n")
    assert [kind for kind, _ in events] == ["fsync", "rename"]
    assert is_temporary(events[0][1]) and events[1][1] == str(target)
