"""``iqa-check`` is a light process: it reads a database through its Lightning-free class, so it
imports neither torch nor Lightning (they took seconds and ~1 GB before a file was read), and a
10k-image database is checked in well under 1 GiB."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from iqa_lab.data.check import DATABASE_OF, database_config
from iqa_lab.data.database import LOADER_KEYS, IQADatabase
from tests.planted import png_bytes

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "torchvision", "torchmetrics", "albumentations", "cv2")

# Runs the check as ``python -m iqa_lab.data.check <argv>`` does and prints, as its last line, the
# exit status, the heavy modules it imported and its peak resident memory (VmHWM).
RUN_CHECK = textwrap.dedent("""
    import json, runpy, sys
    heavy = json.loads(sys.argv[2])
    sys.argv = ["iqa_lab.data.check", *json.loads(sys.argv[1])]
    try:
        runpy.run_module("iqa_lab.data.check", run_name="__main__", alter_sys=True)
        status = 0
    except SystemExit as exit:
        status = exit.code
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    heavy = sorted(m for m in heavy if m in sys.modules)
    print(json.dumps({"status": status, "heavy": heavy, "peak_mib": peak / 1024}))
""")


def run_check_process(args: list[str]) -> tuple[dict, str]:
    out = subprocess.run(
        [sys.executable, "-c", RUN_CHECK, json.dumps(args), json.dumps(HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-1]), "\n".join(lines[:-1])


def plant_database(folder: Path, count: int) -> None:
    """``count`` random 32x32 PNGs under ``images/`` and ``labels.csv`` (image, mos)."""
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["image,mos"]
    for i in range(count):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        (folder / "images" / f"img{i:05d}.png").write_bytes(png_bytes(pixels))
        rows.append(f"images/img{i:05d}.png,{rng.uniform():.4f}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")


def test_the_loader_keys_are_exactly_what_the_datamodule_adds():
    from iqa_lab.data.datamodule import IQADataModule

    def keys(cls) -> set[str]:
        parameters = inspect.signature(cls.__init__).parameters.values()
        return {p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD} - {"self"}

    assert keys(IQADataModule) - keys(IQADatabase) == set(LOADER_KEYS)
    assert issubclass(IQADataModule, IQADatabase)


def test_every_database_config_with_a_light_class_is_checked_through_it(make_cfg):
    from hydra.utils import get_class

    from iqa_lab.data.databases.spaq import SPAQDatabase
    from iqa_lab.data.spaq_datamodule import SPAQDataModule

    for datamodule, database in DATABASE_OF.items():
        assert issubclass(get_class(datamodule), get_class(database))
    assert issubclass(SPAQDataModule, SPAQDatabase)
    for name in ("csv", "koniq10k", "spaq", "flive_patches"):
        cfg = make_cfg("check", [f"data={name}"], tiny=False)
        light = database_config(cfg.data)
        assert light._target_ == DATABASE_OF[cfg.data._target_]
        assert not set(light) & set(LOADER_KEYS) and "transforms" in cfg.data
        assert light.data_dir == cfg.data.data_dir  # interpolations resolved
    synthetic = make_cfg("check", [], tiny=False).data
    assert database_config(synthetic) is synthetic  # built with torch: kept as configured


def test_the_check_of_a_database_imports_no_torch_nor_lightning(tmp_path):
    plant_database(tmp_path / "db", 40)
    (tmp_path / "db" / "images" / "img00007.png").write_bytes(b"not an image")
    report, printed = run_check_process(
        ["data=csv", f"data.data_dir={tmp_path / 'db'}", f"paths.cache_dir={tmp_path / 'cache'}"]
    )
    assert report["heavy"] == []
    assert report["status"] == 1  # the broken file is found, as before
    assert "images/img00007.png" in printed and "UNUSABLE under data.on_bad=raise" in printed


@pytest.mark.slow
def test_checking_a_10k_image_database_stays_under_1_gib(tmp_path):
    plant_database(tmp_path / "db", 10_000)
    report, printed = run_check_process(
        [
            "data=csv",
            f"data.data_dir={tmp_path / 'db'}",
            f"paths.cache_dir={tmp_path / 'cache'}",
            "workers=2",
        ]
    )
    print(report)
    assert report["status"] == 0 and "usable: 10000 records" in printed
    assert report["heavy"] == [] and report["peak_mib"] < 1024
