"""``python -m iqa_lab.score inputs=… ckpt=…`` (``iqa-score``): score new photos, no labels needed.

With ``ckpt=`` a trained checkpoint scores them as its run evaluated its test split: the eval
transform and the MOS scale of its training database are stored in the checkpoint
(``data.scoring_recipe``), the images go through ``IQAModule.score`` in batches, optionally with a
test-time augmentation recipe (``tta=``, ``conf/tta/``, ``data.tta``); ``quality_maps=<dir>``
writes a heat-map picture of each image's quality map there (models that predict one). With
``metric=`` a classical measure scores them instead (full-reference ones against
``reference=<folder>``, matched by file name).

The output (``output=``, ``.csv`` or ``.json``) has one row per image in the order given: ``path``,
``score`` (a checkpoint: on its training database's published MOS scale; a measure: in its own
units), ``score_01`` (a checkpoint: the normalised scale it was trained on, 0 and 1 = the ends of
that MOS scale, higher = better; empty for a measure) and ``error``. An image that cannot be used
(corrupt, truncated, missing, over ``max_pixels``, no reference) gets its reason there and the
others are still scored; the exit status is then 1. Throughput (img/s) is printed at the end.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from iqa_lab.cli import run_command
from iqa_lab.data.collate import IQACollate
from iqa_lab.data.image_inputs import list_images, match_references
from iqa_lab.data.images import BadImageError, load_rgb
from iqa_lab.data.records import published_scale
from iqa_lab.data.transforms import build_transform
from iqa_lab.data.tta import build_tta
from iqa_lab.errors import ConfigError
from iqa_lab.evaluation.quality_maps import write_quality_maps
from iqa_lab.files import atomic_path
from iqa_lab.models.scoring import (
    file_dataset,
    file_reason,
    load_scorer,
    pick_device,
    score_files,
)
from iqa_lab.progress import track
from iqa_lab.runs import task_wrapper

COLUMNS = ("path", "score", "score_01", "error")
FORMATS = (".csv", ".json")


@task_wrapper
def score(cfg: DictConfig) -> dict:
    """Score ``cfg.inputs``, write ``cfg.output``; returns the summary (counts, img/s)."""
    if bool(cfg.get("ckpt")) == bool(cfg.get("metric")):
        raise ConfigError(
            "iqa-score needs ckpt=<trained checkpoint> or metric=<classical measure, e.g. "
            "brisque_live>, one of the two"
        )
    output = Path(cfg.output)
    if output.suffix.lower() not in FORMATS:
        raise ConfigError(f"output={output}: name a .csv or a .json file")
    paths = list_images(cfg.inputs)
    references = match_references(paths, cfg.reference) if cfg.get("reference") else None
    scorer = _with_checkpoint if cfg.get("ckpt") else _with_metric
    table, about, seconds = scorer(cfg, paths, references)
    failed = table[table["error"].notna()]
    summary = {
        "images": len(table),
        "scored": len(table) - len(failed),
        "failed": len(failed),
        "seconds": round(seconds, 3),
        "images_per_s": round((len(table) - len(failed)) / seconds, 2) if seconds > 0 else None,
        "output": str(output),
    }
    write_scores(table, output, {**about, **summary})
    print(
        f"iqa-score: {summary['scored']} of {summary['images']} images scored in "
        f"{seconds:.2f} s ({summary['images_per_s']} img/s); scores in {output}"
    )
    if len(failed):
        print(f"{len(failed)} failed:")
        for row in failed.itertuples():
            print(f"  {row.path}: {row.error}")
    return summary


def _split_by_reference(paths, references) -> tuple[list[int], dict[int, str]]:
    """Positions that can be scored, and the reason of those whose reference is missing."""
    usable, errors = [], {}
    for position, path in enumerate(paths):
        matched = references[path] if references is not None else None
        if isinstance(matched, str):
            errors[position] = matched
        else:
            usable.append(position)
    return usable, errors


def _table(paths, scores, scores_01, errors: dict[int, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": [str(p) for p in paths],
            "score": scores,
            "score_01": scores_01,
            "error": [errors.get(i) for i in range(len(paths))],
        },
        columns=list(COLUMNS),
    )


def _with_checkpoint(cfg: DictConfig, paths: Sequence[Path], references) -> tuple:
    ckpt = Path(cfg.ckpt).expanduser()
    model, database, recipe = load_scorer(ckpt, cfg.get("database"))
    if "reference" in model.needs and references is None:
        raise ConfigError(
            f"ckpt={ckpt} is a full-reference model: give reference=<folder of references>"
        )
    references = references if "reference" in model.needs else None
    transform = build_transform("test", **recipe["eval_transform"])
    model.tta = build_tta(cfg.tta)
    usable, errors = _split_by_reference(paths, references)
    start = time.perf_counter()
    normalised, failed = score_files(
        model,
        [paths[i] for i in usable],
        transform,
        references=references,
        collate=recipe.get("collate", "stack"),
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        max_pixels=cfg.max_pixels,
        device=pick_device(cfg.device),
    )
    seconds = time.perf_counter() - start
    if cfg.get("quality_maps"):
        file_quality_maps(cfg, model, [paths[i] for i in usable], transform, references)
    scores_01 = np.full(len(paths), np.nan)
    scores_01[usable] = normalised
    errors.update({usable[i]: reason for i, reason in failed.items()})
    lo, hi = recipe["mos_range"]
    about = {
        "checkpoint": str(ckpt),
        "database": database,
        "mos_range": [lo, hi],
        "lower_better": recipe["lower_better"],
        "score": f"on {database}'s published scale [{lo:g}, {hi:g}]"
        + (" (lower = better)" if recipe["lower_better"] else ""),
        "score_01": "the normalised scale the model was trained on (higher = better)",
        "tta": cfg.tta.name,
    }
    scores = published_scale(scores_01, (lo, hi), recipe["lower_better"])
    return _table(paths, scores, scores_01, errors), about, seconds


def file_quality_maps(cfg: DictConfig, model, paths: Sequence[Path], transform, references):
    """One quality-map picture per image that decodes, in ``cfg.quality_maps``."""
    dataset = file_dataset(
        model, paths, transform, references=references, max_pixels=cfg.max_pixels
    )
    loader = DataLoader(dataset, batch_size=cfg.batch_size, collate_fn=IQACollate("stack"))
    batches = ((b, [dataset.images[i] for i in b["index"].tolist()]) for b in loader)
    written = write_quality_maps(model, batches, cfg.quality_maps, pick_device(cfg.device))
    print(f"iqa-score: {len(written)} quality maps in {cfg.quality_maps}")


def _with_metric(cfg: DictConfig, paths: Sequence[Path], references) -> tuple:
    measure = hydra.utils.instantiate(cfg.classical, metric=cfg.metric)
    full_reference = measure.full_reference
    if full_reference and references is None:
        raise ConfigError(
            f"metric={cfg.metric} is full-reference: give reference=<folder of references, "
            f"matched by file name>"
        )
    usable, errors = _split_by_reference(paths, references if full_reference else None)
    values = np.full(len(paths), np.nan)
    start = time.perf_counter()
    for position in track(usable, f"iqa-score {cfg.metric}", unit="img"):
        try:
            image = load_rgb(paths[position], cfg.max_pixels)
            reference = (
                load_rgb(references[paths[position]], cfg.max_pixels) if full_reference else None
            )
            values[position] = measure.image_value(image, reference)
            if np.isnan(values[position]):
                errors[position] = (
                    f"{cfg.metric} is undefined for this image (e.g. NIQE of a flat one)"
                )
        except ConfigError:
            raise
        except (BadImageError, ValueError) as err:
            errors[position] = file_reason(str(paths[position]), str(err))
    seconds = time.perf_counter() - start
    about = {"metric": cfg.metric, "score": f"{cfg.metric} in its own units", "score_01": None}
    return _table(paths, values, np.full(len(paths), np.nan), errors), about, seconds


def _json_value(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_scores(table: pd.DataFrame, output: Path, about: dict) -> None:
    """``table`` as CSV, or as JSON ``{"about": …, "scores": [rows]}`` (NaN written as null)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        if output.suffix.lower() == ".csv":
            table.to_csv(tmp, index=False)
            return
        rows = [
            {key: _json_value(value) for key, value in row.items()}
            for row in table.to_dict(orient="records")
        ]
        tmp.write_text(json.dumps({"about": about, "scores": rows}, indent=1) + "\n")


@hydra.main(version_base="1.3", config_path="../conf", config_name="score")
def main(cfg: DictConfig) -> None:
    if score(cfg)["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    run_command(main)
