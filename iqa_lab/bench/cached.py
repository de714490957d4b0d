"""``cached_vs_recomputed_epoch``: one training epoch of a model with a frozen backbone prefix
(``bench.cached.frozen_stages``) over the same training images, (a) recomputing the prefix from
pixels at every step, (b) reading the prefix's outputs from the frozen-feature cache
(``training.feature_cache``: ``fill_store`` computes them, ``CachedFeatureDataset`` serves them).
Filling the cache is timed on its own and is not part of the cached epoch."""

from __future__ import annotations

import contextlib
import copy
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from iqa_lab.bench import steps
from iqa_lab.bench.report import Ratio
from iqa_lab.errors import ConfigError
from iqa_lab.nn.feature_cache import FeatureStore
from iqa_lab.training.feature_cache import (
    CachedFeatureDataset,
    fill_store,
    frozen_backbone,
    set_key,
)

NAME = "cached_vs_recomputed_epoch"


def frozen_model(cfg: DictConfig, head_names: dict, frozen_stages: int):
    """The configured model with ``model.backbone.frozen_stages`` set; None when the model's
    config has no such option."""
    if OmegaConf.select(cfg.model, "backbone.frozen_stages") is None:
        return None
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.frozen_stages = frozen_stages
    return hydra.utils.instantiate(model_cfg, **head_names)


@contextlib.contextmanager
def training_split(datamodule, dataset) -> Iterator[None]:
    """``datamodule``'s training loader serves ``dataset`` inside the block."""
    saved = datamodule.datasets["train"]
    datamodule.datasets["train"] = dataset
    try:
        yield
    finally:
        datamodule.datasets["train"] = saved


@contextlib.contextmanager
def cache_folder(cache_dir: str | None) -> Iterator[Path]:
    """``cache_dir``, or a temporary folder removed afterwards when it is None."""
    if cache_dir is not None:
        yield Path(cache_dir)
        return
    with tempfile.TemporaryDirectory(prefix="iqa_lab_bench_features_") as folder:
        yield Path(folder)


def cached_feature_ratio(cfg: DictConfig, datamodule, head_names: dict) -> Ratio:
    """Recomputed-epoch time / cached-epoch time per image (``bench.cached``)."""
    settings, warmup = cfg.bench.cached, cfg.bench.warmup_batches
    goal = cfg.bench.goals.cached_vs_recomputed_epoch
    k = int(settings.frozen_stages)
    if k < 1:
        raise ConfigError(
            f"bench.cached.frozen_stages must be >= 1 (a frozen prefix to cache), got {k}"
        )
    model = frozen_model(cfg, head_names, k)
    if model is None:
        return Ratio(NAME, None, goal, note=f"{cfg.model._target_} has no backbone.frozen_stages")
    if model.needs:
        return Ratio(NAME, None, goal, note=f"the model needs {sorted(model.needs)} in batches; "
                     "the feature cache stores images only")  # fmt: skip
    records = datamodule.records
    rows = records[records["split"] == "train"].head(settings.images)
    dataset = datamodule.make_dataset(rows, "train")
    backbone = frozen_backbone(model)

    with training_split(datamodule, dataset):
        recomputed = steps.time_epoch(cfg, model, datamodule, warmup, None)
    with cache_folder(settings.cache_dir) as folder:
        store = FeatureStore(folder, set_key(backbone, dataset.transform), settings.dtype)
        start = time.perf_counter()
        item_rows, computed = fill_store(
            store,
            backbone,
            dataset,
            settings.views,
            True,
            datamodule.batch_size,
            datamodule.num_workers,
        )
        fill_s = time.perf_counter() - start
        cached_dataset = CachedFeatureDataset(dataset, item_rows, store.reader(in_memory=True))
        reading = copy.deepcopy(model)
        frozen_backbone(reading).reads_prefix_features = True
        with training_split(datamodule, cached_dataset):
            cached = steps.time_epoch(cfg, reading, datamodule, warmup, None)
        feature_shape, feature_mib = list(store.shape), store.nbytes() / 2**20

    where = "a temporary folder" if settings.cache_dir is None else str(settings.cache_dir)
    return Ratio(
        NAME,
        cached.per_second / recomputed.per_second,
        goal,
        {
            "frozen_stages": k,
            "images": len(dataset),
            "views": settings.views,
            "recomputed_img_s": recomputed.per_second,
            "cached_img_s": cached.per_second,
            "fill_s": fill_s,
            "images_computed": computed,
            "feature_shape": feature_shape,
            "feature_dtype": settings.dtype,
            "feature_mib": feature_mib,
            "cache_dir": where,
        },
        f"frozen_stages={k}, {len(dataset)} images; cache filled in {fill_s:.3g} s "
        f"({computed} computed, not in the ratio) under {where}",
    )
