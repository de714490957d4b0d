"""The run store reuses a finished run only under the same config, code version, label and image
files, and never silently one that left out bad inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from iqa_lab.evaluation import runstore
from iqa_lab.evaluation.runstore import (
    image_fingerprint,
    label_fingerprint,
    record_finished,
    run_key,
)
from iqa_lab.runs import reuse_finished_run
from tests.planted import FolderDataModule, corrupt_middle_png, labels, pattern, plant, png_bytes

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


def test_a_run_tested_with_another_tta_recipe_is_not_reused(make_cfg, tmp_path):
    data_dir = _database(tmp_path / "db")
    plain, with_tta, five_chunks = (
        make_cfg("train", ["data=csv", f"data.data_dir={data_dir}", *extra], tiny=False)
        for extra in ([], ["tta=msliqa108"], ["tta=msliqa108", "tta.chunk_size=5"])
    )
    assert run_key(plain) != run_key(with_tta)
    assert run_key(with_tta) == run_key(five_chunks)  # how many views at a time: same numbers
    assert "tta" not in runstore.identity(plain)  # runs without TTA keep their keys


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


# --- images in the key (issue 14: nothing stale) ----------------------------------------------


def test_changed_images_never_reuse(csv_cfg, tmp_path):
    _finish(csv_cfg, tmp_path / "first")
    assert reuse_finished_run(csv_cfg) is not None
    image = tmp_path / "db" / "a.png"
    image.write_bytes(b"a fixed image")  # replaced: another size
    assert reuse_finished_run(csv_cfg) is None
    _finish(csv_cfg, tmp_path / "second")
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same size, newer
    assert reuse_finished_run(csv_cfg) is None
    _finish(csv_cfg, tmp_path / "third")
    (tmp_path / "db" / "c.png").write_bytes(b"one more")  # an image added
    assert reuse_finished_run(csv_cfg) is None


def test_image_fingerprint_stat_or_content(tmp_path):
    folder = _database(tmp_path / "db")
    data = {"name": "csv", "data_dir": str(folder), "label_file": "labels.csv"}
    stat, content = image_fingerprint(data, "stat"), image_fingerprint(data, "content")
    assert stat["csv"].startswith("stat 2 images ") and content["csv"].startswith("content 2 ")
    # Not images: label files (their own fingerprint), notes, hidden and temporary files.
    (folder / "README.txt").write_text("notes")
    (folder / ".thumbs.png").write_bytes(b"hidden")
    (folder / "a.123-4.tmp.png").write_bytes(b"a write in progress")
    assert image_fingerprint(data, "stat") == stat
    # A copy that does not keep modification times: stat sees it, content does not.
    image = folder / "b.png"
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    assert image_fingerprint(data, "stat") != stat
    assert image_fingerprint(data, "content") == content
    # Upper-case suffixes and sub-folders count.
    (folder / "Images").mkdir()
    (folder / "Images" / "x.JPG").write_bytes(b"jpeg")
    assert image_fingerprint(data, "content")["csv"].startswith("content 3 images ")
    mixed = {"name": "mixed", "data_dir": str(tmp_path), "databases": {"csv": data}}
    assert list(image_fingerprint(mixed, "stat")) == ["csv"]
    assert image_fingerprint({"name": "synthetic"}, "stat") == {}
    with pytest.raises(ValueError, match=r"image_fingerprint must be one of \('stat', 'content'\)"):
        image_fingerprint(data, "mtime")


def _broken_run(cfg, folder: Path, image: Path) -> dict:
    """A finished run whose results list ``image`` as failing to decode (data.on_bad=skip)."""
    item = {
        "image": image.name,
        "reason": f"decode: {image}: cannot be decoded",
        "split": "test",
        "kind": "decode",
        "path": str(image),
    }
    results = _finish(cfg, folder)
    results["bad_inputs"] = {"count": 1, "list": [item]}
    (folder / "results.json").write_text(json.dumps(results))
    record_finished(cfg, folder, results)
    return results


def test_a_run_with_decode_failures_is_reused_only_saying_so(csv_cfg, tmp_path, capsys):
    broken = tmp_path / "db" / "a.png"  # b"not decoded": it fails again today
    _broken_run(csv_cfg, tmp_path / "first", broken)
    reused = reuse_finished_run(csv_cfg)
    assert reused is not None
    out = capsys.readouterr().out
    assert (
        f"REUSED from {COMMIT} ({(tmp_path / 'first').resolve()}); it left out 1 bad inputs "
        "(1 failed to decode; a.png), listed in results.json bad_inputs; reuse_finished=false "
        "runs it again"
    ) in out
    written = json.loads((tmp_path / "again" / "results.json").read_text())
    assert written["bad_inputs"]["list"][0]["path"] == str(broken)


def test_a_run_whose_failed_images_decode_now_is_not_reused(csv_cfg, tmp_path, caplog):
    # A failure that left no trace in the file's size or time (a read error): it decodes today.
    image = tmp_path / "db" / "a.png"
    stat = image.stat()
    image.write_bytes(png_bytes(pattern(4, 4)))
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    _broken_run(csv_cfg, tmp_path / "first", image)
    entry = json.loads((runstore.store_dir(csv_cfg) / f"{run_key(csv_cfg)}.json").read_text())
    assert entry["decode_failures"] == [str(image)]
    assert reuse_finished_run(csv_cfg) is None
    assert "1 of the images that failed to decode in it decode now" in caplog.text


def test_a_late_decode_failure_names_its_file(tmp_path):
    """What the store decodes again comes from the loaders: each failure names its file."""
    names = [f"img{i}.png" for i in range(4)]
    plant(tmp_path, {n: png_bytes(pattern(seed=i)) for i, n in enumerate(names)})
    plant(tmp_path, {"broken.png": corrupt_middle_png(pattern(seed=9))})
    datamodule = FolderDataModule(labels(names + ["broken.png"]), tmp_path, on_bad="skip")
    datamodule.setup()
    for split in ("train", "val", "test"):
        for batch in datamodule._loader(split, shuffle=False):
            datamodule.on_before_batch_transfer(batch, 0)  # as Lightning does
    [item] = datamodule.bad_inputs
    assert item["path"] == str(tmp_path / "broken.png") and item["kind"] == "decode"
    results = {"bad_inputs": {"count": 1, "list": datamodule.bad_inputs}}
    assert runstore.decode_failures(results) == [str(tmp_path / "broken.png")]


def test_tables_reading_a_run_with_bad_inputs_warn_once(csv_cfg, tmp_path, caplog):
    _broken_run(csv_cfg, tmp_path / "first", tmp_path / "db" / "a.png")
    store, key = runstore.store_dir(csv_cfg), run_key(csv_cfg)
    assert runstore.read_entry(store, key) is not None  # the table's plan…
    assert runstore.read_entry(store, key) is not None  # …and its collect
    warnings = [r.message for r in caplog.records if "reusing the run in" in r.message]
    assert warnings == [
        f"reusing the run in {(tmp_path / 'first').resolve()}: it left out 1 bad inputs "
        "(1 failed to decode; a.png), listed in results.json bad_inputs"
    ]
