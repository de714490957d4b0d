"""The bench: every ratio of ``conf/bench.yaml`` for the configured model and database."""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from iqa_lab.allocator import set_mmap_threshold
from iqa_lab.bench import cached, classical, steps
from iqa_lab.bench.memory import GIB, PeakRSS
from iqa_lab.bench.report import Ratio, table, write_json
from iqa_lab.runs import seeded_datamodule
from iqa_lab.train import head_names

log = logging.getLogger("iqa_lab")


def run_bench(cfg: DictConfig) -> dict:
    """Measure, print the table, write ``<output_dir>/bench.json``; returns the JSON's dict."""
    bench = cfg.bench
    goals = bench.goals
    set_mmap_threshold(cfg.malloc_mmap_threshold_kb)
    if bench.torch_threads is not None:
        torch.set_num_threads(bench.torch_threads)
    datamodule = seeded_datamodule(cfg, "fit")
    heads = head_names(cfg, datamodule)
    model = hydra.utils.instantiate(cfg.model, **heads)
    datamodule.provide(model.needs)
    warmup, count = bench.warmup_batches, bench.batches

    # The epoch first: its peak memory is then the run's (setup + epoch), not the other timings'.
    with PeakRSS(bench.rss_interval_s) as peak:
        epoch = steps.time_epoch(cfg, model, datamodule, warmup, bench.epoch_batches)
    batches = steps.preload(datamodule.train_dataloader(), warmup + count)
    # Interleaved rounds, the fastest of each kind kept: on a shared machine every kind then
    # meets the same load, and a burst of other work slows one round, not one side of a ratio.
    rounds = {"bare": [], "lightning": [], "end_to_end": [], "loader": []}
    for _ in range(bench.rounds):
        rounds["bare"].append(steps.time_bare_loop(model, batches, warmup))
        rounds["lightning"].append(steps.time_lightning(cfg, model, batches, warmup))
        rounds["end_to_end"].append(steps.time_epoch(cfg, model, datamodule, warmup, len(batches)))
        rounds["loader"].append(steps.time_loader(datamodule.train_dataloader(), warmup, count))
    bare, lightning, end_to_end, loader = (steps.fastest(rounds[kind]) for kind in rounds)
    epoch_images = len(datamodule.datasets["train"])
    covered = epoch.images + warmup * datamodule.batch_size

    ratios = [
        Ratio(
            "lightning_step_vs_bare_loop",
            lightning.seconds / bare.seconds * bare.images / lightning.images,
            goals.lightning_step_vs_bare_loop,
            {"lightning_img_s": lightning.per_second, "bare_img_s": bare.per_second},
            "time per image, Lightning / bare PyTorch, same in-memory batches",
        ),
        Ratio(
            "loader_vs_model_throughput",
            loader.per_second / bare.per_second,
            goals.loader_vs_model_throughput,
            {"loader_img_s": loader.per_second, "model_img_s": bare.per_second},
            f"{datamodule.num_workers} loader workers",
        ),
        Ratio(
            "end_to_end_vs_model_throughput",
            end_to_end.per_second / bare.per_second,
            goals.end_to_end_vs_model_throughput,
            {
                "end_to_end_img_s": end_to_end.per_second,
                "model_img_s": bare.per_second,
                "epoch_img_s": epoch.per_second,
            },
            "Lightning fed by the loader / bare loop on in-memory batches",
        ),
        cached.cached_feature_ratio(cfg, datamodule, heads),
        Ratio(
            "peak_rss_gib",
            peak.bytes / GIB,
            goals.peak_rss_gib,
            {"epoch_images": epoch_images, "images_covered": min(covered, epoch_images)},
            (
                "setup + whole training epoch"
                if bench.epoch_batches is None
                else f"setup + partial epoch: {min(covered, epoch_images)} of {epoch_images} images"
            )
            + f", {datamodule.num_workers} loader workers",
        ),
        *classical_ratios(cfg),
    ]
    setup = {
        "data": datamodule.name,
        "data_dir": str(datamodule.data_dir),
        "model": cfg.model._target_,
        "backbone": OmegaConf.select(cfg, "model.backbone.name"),
        "batch_size": datamodule.batch_size,
        "num_workers": datamodule.num_workers,
        "transforms": OmegaConf.to_container(cfg.data.transforms, resolve=True),
        "torch_threads": torch.get_num_threads(),
        "malloc_mmap_threshold_kb": cfg.malloc_mmap_threshold_kb,
        "grad_checkpointing": OmegaConf.select(cfg, "model.backbone.grad_checkpointing"),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "warmup_batches": warmup,
        "timed_batches": count,
        "rounds": bench.rounds,
    }
    print(table(ratios))
    path = Path(cfg.paths.output_dir) / "bench.json"
    report = write_json(path, ratios, setup)
    print(f"bench: {path}")
    return report


def classical_ratios(cfg: DictConfig) -> list[Ratio]:
    """One ratio per classical metric: iqa_lab's time per 512x384 pair / the fastest toolbox's
    (piq, or pyiqa when importable); the metrics no toolbox has offline are not measured."""
    settings = cfg.bench.classical
    pairs = classical.image_pairs(settings.pairs)
    ratios = []
    for metric in settings.metrics:
        times = classical.time_metric(metric, pairs, settings.repeats)
        toolboxes = {k: v for k, v in times.items() if k != "iqa_lab_s_per_pair"}
        note = f"{len(pairs)} pairs of {classical.pixels_of(pairs)} px"
        if "pyiqa_s_per_pair" not in times:
            installed = classical.pyiqa_installed()
            note += f"; pyiqa has no offline {metric}" if installed else "; pyiqa not installed"
        if "piq_s_per_pair" not in times:
            note = f"piq has no offline {metric}; {note}"
        fastest = min(toolboxes.values(), default=None)
        ratios.append(
            Ratio(
                f"classical_{metric}_vs_toolbox_time",
                times["iqa_lab_s_per_pair"] / fastest if fastest else None,
                cfg.bench.goals.classical_vs_toolbox_time,
                times,
                note,
            )
        )
    return ratios
