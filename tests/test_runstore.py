"""The run store reuses a finished run only under the same config, code version and label files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iqa_lab.evaluation import runstore
from iqa_lab.evaluation.runstore import label_fingerprint, record_finished, run_key
from iqa_lab.runs import reuse_finished_run

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _database(folder: Path) -> Path:
    """A csv database: one label file and two image files (never read here)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.csv").write_text("image,mos\na.png,0.2\nb.png,0.8\n")
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes(b"not decoded")
    return folder


def _finish(cfg, folder: Path) -> dict:
    """Record a finished run of ``cfg`` whose outputs are in ``folder``, as ``finish_run`` does."""
    results = {
        "metrics": {f"test/{k}": 0.5 for k in ("srcc", "plcc", "krcc", "rmse")},
        "data": {"name": "csv", "synthetic_labels": False, "split_sizes": {"test": 2}},
        "paper_parity": False,
        "wall_s": 1.0,
        "split": {"repeat": 0},
        "git_commit": COMMIT,
    }
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))
    record_finished(cfg, folder, results)
    return results


@pytest.fixture
def csv_cfg(make_cfg, tmp_path):
    data_dir = _database(tmp_path / "db")
    cfg = make_cfg("train", ["data=csv", f"data.data_dir={data_dir}"], tiny=False)
    cfg.paths.output_dir = str(tmp_path / "again")
    return cfg


def test_a_finished_run_is_reused_and_says_from_which_commit(csv_cfg, tmp_path, capsys):
    first = _finish(csv_cfg, tmp_path / "first")
    reused = reuse_finished_run(csv_cfg)
    assert reused["metrics"] == first["metrics"]
    assert f"REUSED from {COMMIT}" in capsys.readouterr().out
    written = json.loads((tmp_path / "again" / "results.json").read_text())
    assert written["reused_from_commit"] == COMMIT
    assert written["reused_from"] == str((tmp_path / "first").resolve())


def test_changed_code_never_reuses(csv_cfg, tmp_path, monkeypatch):
    _finish(csv_cfg, tmp_path / "first")
    key = run_key(csv_cfg)
    monkeypatch.setattr(runstore, "code_version", lambda: "code after a fix")
    assert run_key(csv_cfg) != key
    assert reuse_finished_run(csv_cfg) is None


def test_changed_label_files_never_reuse(csv_cfg, tmp_path):
    _finish(csv_cfg, tmp_path / "first")
    (tmp_path / "db" / "labels.csv").write_text("image,mos\na.png,0.3\nb.png,0.8\n")
    assert reuse_finished_run(csv_cfg) is None


def test_label_fingerprint_reads_label_files_not_images(tmp_path):
    folder = _database(tmp_path / "db")
    (folder / "split").mkdir()
    (folder / "split" / "test.txt").write_text("b.png\n")
    data = {"name": "csv", "data_dir": str(folder), "label_file": "labels.csv"}
    data["split_files"] = {"split/test.txt": "test"}
    before = label_fingerprint(data)
    assert sorted(before["csv"]) == ["labels.csv", "split/test.txt"]
    size, digest = before["csv"]["labels.csv"].split(":")
    assert int(size) == (folder / "labels.csv").stat().st_size and len(digest) == 64
    (folder / "a.png").write_bytes(b"other pixels")
    assert label_fingerprint(data) == before
    (folder / "split" / "test.txt").write_text("a.png\n")
    assert label_fingerprint(data) != before
    # Members of a mixed database each on their own; generated databases have none.
    mixed = {"name": "mixed", "data_dir": str(tmp_path), "databases": {"csv": data}}
    assert list(label_fingerprint(mixed)) == ["csv"]
    assert label_fingerprint({"name": "synthetic", "cache_dir": str(tmp_path)}) == {}


def test_code_version_hashes_sources_and_configs_without_git(tmp_path):
    package, conf = tmp_path / "pkg", tmp_path / "conf"
    package.mkdir()
    conf.mkdir()
    (package / "model.py").write_text("SCALE = 1\n")
    (conf / "train.yaml").write_text("seed: 42\n")
    version = runstore.code_version.__wrapped__  # uncached: the files change below
    before = version((package, conf))
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    (package / "notes.md").write_text("not code")
    assert version((package, conf)) == before
    (package / "model.py").write_text("SCALE = 2\n")
    assert version((package, conf)) != before
    (package / "model.py").write_text("SCALE = 1\n")
    (conf / "train.yaml").write_text("seed: 43\n")
    assert version((package, conf)) != before


def test_new_weights_under_an_old_checkpoint_name_never_reuse(csv_cfg, tmp_path):
    checkpoint = tmp_path / "best.ckpt"
    checkpoint.write_bytes(b"weights of the first training")
    csv_cfg.ckpt_path = str(checkpoint)
    _finish(csv_cfg, tmp_path / "first")
    assert reuse_finished_run(csv_cfg) is not None
    checkpoint.write_bytes(b"weights of a second training")
    assert reuse_finished_run(csv_cfg) is None
