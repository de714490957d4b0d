"""``python -m iqa_lab.bench``: every ratio with its goal and verdict, printed and in bench.json."""

from __future__ import annotations

import json
import math
import re

import torch

from iqa_lab.bench.report import Ratio, table
from iqa_lab.bench.run import run_bench

RATIOS = [
    "lightning_step_vs_bare_loop",
    "loader_vs_model_throughput",
    "end_to_end_vs_model_throughput",
    "cached_vs_recomputed_epoch",
    "peak_rss_gib",
    "classical_psnr_vs_piq_time",
    "classical_gmsd_vs_piq_time",
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
        if name == "cached_vs_recomputed_epoch":
            continue
        assert math.isfinite(ratio["value"]) and ratio["value"] > 0, name
        side, bound = next(iter(ratio["goal"].items()))
        met = ratio["value"] <= bound if side == "max" else ratio["value"] >= bound
        assert ratio["verdict"] == ("pass" if met else "FAIL"), name
    assert ratios["lightning_step_vs_bare_loop"]["goal"] == {"max": 1.05}
    assert ratios["loader_vs_model_throughput"]["goal"] == {"min": 2.0}
    assert ratios["end_to_end_vs_model_throughput"]["goal"] == {"min": 0.9}
    assert ratios["peak_rss_gib"]["goal"] == {"max": 4.0}
    assert ratios["classical_psnr_vs_piq_time"]["goal"] == {"max": 1.0}
    cached = ratios["cached_vs_recomputed_epoch"]
    assert cached["value"] is None and cached["verdict"] == "not measured"
    assert cached["goal"] == {"min": 20.0}
    epoch = ratios["peak_rss_gib"]["detail"]
    assert epoch["images_covered"] == epoch["epoch_images"] > 0  # epoch_batches=null: all of it
    assert report["setup"]["data"] == "synthetic" and report["setup"]["batch_size"] == 2
    assert report["setup"]["timed_batches"] == 2 and report["setup"]["rounds"] == 1
    assert report["setup"]["torch_threads"] == 1
    printed = capsys.readouterr().out
    assert re.search(
        r"^cached_vs_recomputed_epoch +- +≥ 20 +not measured: needs the frozen-feature cache "
        r"\(issue 15 item 1\)$",
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
