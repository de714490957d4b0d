"""``python -m iqa_lab.explain ckpt=… inputs=…`` (``iqa-explain``): where a trained model looks
when it scores an image.

Each image is read and transformed as ``iqa-score`` reads it (the checkpoint's stored eval
transform, ``models.scoring``), without the transform's crop unless ``keep_crop=true``, so the
whole picture is explained at the scale the model was evaluated at. A saliency method of
pytorch-grad-cam (``method=gradcam | gradcampp | layercam``, ``models.saliency``) explains the
predicted score (``target=score``; ``negated_score``: what lowers it) at ``target_layer`` (the
model's default: its last backbone stage).

Written to ``output_dir``: ``<name>.<method>.png`` per image (the map over the image as the model
saw it, the predicted score on the database's published scale and the normalised one below it),
``contact_sheet.png`` when there are several images, and ``explain.csv`` (``path``, ``score``,
``score_01``, ``overlay``, ``error``). An image that cannot be used is listed with its reason and
the others are explained; the exit status is then 1.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from iqa_lab.cli import run_command
from iqa_lab.data.image_inputs import list_images
from iqa_lab.data.records import published_scale
from iqa_lab.data.transforms import build_transform
from iqa_lab.errors import ConfigError
from iqa_lab.evaluation.overlays import captioned, contact_sheet, heat_map
from iqa_lab.files import atomic_path
from iqa_lab.models.saliency import saliency_maps, target_module
from iqa_lab.models.scoring import file_dataset, file_reason, load_scorer, pick_device
from iqa_lab.progress import track
from iqa_lab.runs import task_wrapper

COLUMNS = ("path", "score", "score_01", "overlay", "error")
SHEET = "contact_sheet.png"
TABLE = "explain.csv"


def overlay_names(paths: Sequence[Path], method: str) -> list[str]:
    """One distinct PNG name per image: its path below the images' common folder, ``/`` as
    ``__``, the suffix replaced by ``.<method>.png`` (``_2``, ``_3``… where names would meet)."""
    absolute = [Path(os.path.abspath(p)) for p in paths]
    root = Path(os.path.commonpath([p.parent for p in absolute])) if absolute else Path("/")
    names, seen = [], {}
    for path in absolute:
        base = "__".join(path.relative_to(root).with_suffix("").parts)
        count = seen[base] = seen.get(base, 0) + 1
        names.append(f"{base}{'' if count == 1 else f'_{count}'}.{method}.png")
    return names


def _eval_transform(recipe: dict, keep_crop: bool):
    options = dict(recipe["eval_transform"])
    if not keep_crop:
        options.update(crop_size=None, crop=None)
    elif options.get("crop") == "five" and options.get("crop_size"):
        raise ConfigError(
            "keep_crop=true: this checkpoint evaluates five crops per image; one map needs one "
            "view, so use keep_crop=false (the whole image at the transform's scale)"
        )
    return build_transform("test", **options)


def _caption(name: str, score: float, score_01: float, recipe: dict, database: str) -> list[str]:
    lo, hi = recipe["mos_range"]
    return [name, f"score {score:.3g} on {database} [{lo:g}, {hi:g}] ({score_01:.3f} of 1)"]


@task_wrapper
def explain(cfg: DictConfig) -> dict:
    """Explain ``cfg.inputs`` with ``cfg.ckpt``; returns the summary (counts, seconds, files)."""
    if not cfg.get("ckpt"):
        raise ConfigError("iqa-explain needs ckpt=<a trained iqa_lab checkpoint>")
    paths = list_images(cfg.inputs)
    model, database, recipe = load_scorer(cfg.ckpt, cfg.get("database"))
    if "reference" in model.needs:
        raise ConfigError(
            f"ckpt={cfg.ckpt} is a full-reference model; iqa-explain explains no-reference ones"
        )
    model.to(pick_device(cfg.device))
    layer, _ = target_module(model, cfg.target_layer)
    dataset = file_dataset(
        model, paths, _eval_transform(recipe, cfg.keep_crop), max_pixels=cfg.max_pixels
    )
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    names = overlay_names(paths, cfg.method)
    rows, pictures, captions = [], [], []
    style = {key: cfg.overlay[key] for key in ("image_weight", "colormap")}
    start = time.perf_counter()
    for i in track(range(len(paths)), f"iqa-explain {cfg.method}", unit="img"):
        item = dataset[i]
        if "bad" in item:
            reason = file_reason(item["bad"]["image"], item["bad"]["reason"])
            rows.append((str(paths[i]), np.nan, np.nan, None, reason))
            continue
        image = item["image"]
        maps, scores = saliency_maps(model, image[None], cfg.method, layer, cfg.target)
        score = float(published_scale(scores[0], recipe["mos_range"], recipe["lower_better"]))
        caption = _caption(paths[i].name, score, float(scores[0]), recipe, database)
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        picture = heat_map(pixels, maps[0], **style)
        with atomic_path(output_dir / names[i]) as tmp:
            captioned(picture, caption, min_side=cfg.overlay.min_side).save(tmp, format="PNG")
        pictures.append(picture)
        captions.append(caption)
        rows.append((str(paths[i]), score, float(scores[0]), str(output_dir / names[i]), None))
    seconds = time.perf_counter() - start
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    with atomic_path(output_dir / TABLE) as tmp:
        table.to_csv(tmp, index=False)
    sheet = None
    if len(paths) > 1 and pictures:
        sheet = output_dir / SHEET
        sheet_options = OmegaConf.to_container(cfg.contact_sheet, resolve=True)
        with atomic_path(sheet) as tmp:
            contact_sheet(pictures, captions, **sheet_options).save(tmp, format="PNG")
    failed = table[table["error"].notna()]
    summary = {
        "images": len(table),
        "explained": len(table) - len(failed),
        "failed": len(failed),
        "method": cfg.method,
        "target": cfg.target,
        "target_layer": layer,
        "seconds": round(seconds, 3),
        "output_dir": str(output_dir),
        "contact_sheet": str(sheet) if sheet else None,
    }
    print(
        f"iqa-explain: {summary['explained']} of {summary['images']} images explained "
        f"({cfg.method} of the {cfg.target} at {layer}) in {seconds:.2f} s; overlays in "
        f"{output_dir}" + (f", contact sheet {sheet}" if sheet else "")
    )
    if len(failed):
        print(f"{len(failed)} failed:")
        for row in failed.itertuples():
            print(f"  {row.path}: {row.error}")
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="explain")
def main(cfg: DictConfig) -> None:
    if explain(cfg)["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    run_command(main)
