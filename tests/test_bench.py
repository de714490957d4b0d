"""``python -m iqa_lab.bench``: every ratio with its goal and verdict, printed and in bench.json."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from iqa_lab.bench.cached import cached_feature_ratio
from iqa_lab.bench.report import Ratio, table
from iqa_lab.bench.run import run_bench
from iqa_lab.errors import ConfigError
from iqa_lab.runs import seeded_datamodule
from iqa_lab.train import head_names

RATIOS = [
    "lightning_step_vs_bare_loop",
    "loader_vs_model_throughput",
    "end_to_end_vs_model_throughput",
    "cached_vs_recomputed_epoch",
    "peak_rss_gib",
    "classical_psnr_vs_toolbox_time",
    "classical_gmsd_vs_toolbox_time",
]
TINY_BENCH = [
    "data.batch_size=2",  # 7 batches of the tiny training split
    "bench.warmup_batches=1",
    "bench.batches=2",
    "bench.rounds=1",
    "bench.torch_threads=1",
    "bench.classical.metrics=[psnr,gmsd]",
    "bench.classical.pairs=2",
    "bench.classical.repeats=1",
    "bench.cached.images=6",  # 3 batches: 1 warm-up, 2 timed, in each epoch
]


def test_bench_runs_on_a_tiny_set_and_writes_its_json(make_cfg, capsys):
    cfg = make_cfg("bench", TINY_BENCH)
    threads = torch.get_num_threads()
    try:
        run_bench(cfg)
    finally:
        torch.set_num_threads(threads)  # bench.torch_threads=1 must not outlive the test
    path = f"{cfg.paths.output_dir}/bench.json"
    with open(path) as f:
        report = json.load(f)
    ratios = {r["name"]: r for r in report["ratios"]}
    assert list(ratios) == RATIOS
    for name, ratio in ratios.items():
        assert set(ratio) == {"name", "value", "goal", "detail", "note", "verdict"}
        assert math.isfinite(ratio["value"]) and ratio["value"] > 0, name
        side, bound = next(iter(ratio["goal"].items()))
        met = ratio["value"] <= bound if side == "max" else ratio["value"] >= bound
        assert ratio["verdict"] == ("pass" if met else "FAIL"), name
    assert ratios["lightning_step_vs_bare_loop"]["goal"] == {"max": 1.05}
    assert ratios["loader_vs_model_throughput"]["goal"] == {"min": 2.0}
    assert ratios["end_to_end_vs_model_throughput"]["goal"] == {"min": 0.9}
    assert ratios["peak_rss_gib"]["goal"] == {"max": 4.0}
    assert ratios["classical_psnr_vs_toolbox_time"]["goal"] == {"max": 1.0}
    cached = ratios["cached_vs_recomputed_epoch"]
    assert cached["goal"] == {"min": 20.0}
    detail = cached["detail"]
    assert detail["frozen_stages"] == 8 and detail["images"] == 6 and detail["views"] == 1
    assert detail["images_computed"] == 6  # a fresh temporary cache: every image is filled
    assert detail["feature_shape"] == [1280] and detail["feature_dtype"] == "float16"
    assert detail["cache_dir"] == "a temporary folder"
    assert cached["value"] == pytest.approx(detail["cached_img_s"] / detail["recomputed_img_s"])
    epoch = ratios["peak_rss_gib"]["detail"]
    assert epoch["images_covered"] == epoch["epoch_images"] > 0  # epoch_batches=null: all of it
    assert report["setup"]["data"] == "synthetic" and report["setup"]["batch_size"] == 2
    assert report["setup"]["timed_batches"] == 2 and report["setup"]["rounds"] == 1
    assert report["setup"]["torch_threads"] == 1
    printed = capsys.readouterr().out
    assert re.search(
        r"^cached_vs_recomputed_epoch +[0-9.e+]+ +≥ 20 +(pass|FAIL)  \(frozen_stages=8, 6 images; "
        r"cache filled in [0-9.e+-]+ s \(6 computed, not in the ratio\) under a temporary "
        r"folder\)$",
        printed,
        re.MULTILINE,
    )
    assert re.search(
        r"^lightning_step_vs_bare_loop +[0-9.e+-]+ +≤ 1.05 +(pass|FAIL)", printed, re.M
    )
    assert f"bench: {path}" in printed


def test_verdict_follows_the_goal_side():
    assert Ratio("a", 1.05, {"max": 1.05}).verdict == "pass"
    assert Ratio("a", 1.06, {"max": 1.05}).verdict == "FAIL"
    assert Ratio("b", 1.9, {"min": 2.0}).verdict == "FAIL"
    assert Ratio("c", None, {"min": 20.0}, note="why").verdict == "not measured"
    assert table([Ratio("b", 2.5, {"min": 2.0}, note="2 workers")]).splitlines() == [
        "ratio     value  goal      verdict",
        "b           2.5  ≥ 2       pass  (2 workers)",
    ]


def test_cached_epoch_keeps_its_cache_in_a_given_folder_and_reuses_it(make_cfg, tmp_path):
    folder = tmp_path / "features"
    cfg = make_cfg(
        "bench",
        [
            "data.batch_size=2",
            "bench.warmup_batches=1",
            "bench.cached.images=4",
            "bench.cached.frozen_stages=6",  # lite0's last stage and head train on the cache
            f"bench.cached.cache_dir={folder}",
        ],
    )
    datamodule = seeded_datamodule(cfg, "fit")
    train = datamodule.datasets["train"]
    heads = head_names(cfg, datamodule)
    first = cached_feature_ratio(cfg, datamodule, heads)
    second = cached_feature_ratio(cfg, datamodule, heads)
    assert first.detail["images_computed"] == 4 and second.detail["images_computed"] == 0
    assert first.detail["feature_shape"] == second.detail["feature_shape"]
    assert first.detail["feature_shape"][0] == 192  # lite0's stage 6 output channels
    assert second.detail["cache_dir"] == str(folder) and any(folder.iterdir())
    assert second.value > 0 and datamodule.datasets["train"] is train  # the split is restored


def test_cached_epoch_needs_a_frozen_prefix(make_cfg):
    cfg = make_cfg("bench", ["bench.cached.frozen_stages=0"])
    with pytest.raises(ConfigError, match=r"bench.cached.frozen_stages must be >= 1"):
        cached_feature_ratio(cfg, None, {})
