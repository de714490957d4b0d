"""Scoring image files in batches with a trained model (``iqa-score ckpt=…``): the files are
decoded and transformed as a run's test split is (``IQADataset``: ``load_rgb``, the eval
transform), batched by ``IQACollate``, and scored by ``IQAModule.predict_batch`` (through
``IQAModule.score``, which averages views). A file that cannot be used is not a reason to stop:
its reason is returned and the others are scored.

``load_scorer`` and ``file_dataset`` are the steps every command that reads a checkpoint and new
files shares (``iqa-score``, ``iqa-explain``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from iqa_lab.data.bad_inputs import BadInputs
from iqa_lab.data.collate import IQACollate
from iqa_lab.data.datamodule import IQADataset
from iqa_lab.data.images import SKIP_HINT
from iqa_lab.data.scoring_recipe import database_recipe
from iqa_lab.errors import ConfigError, MissingFileError
from iqa_lab.models.base import IQAModule, load_iqa_module
from iqa_lab.progress import Progress


def pick_device(device: str) -> torch.device:
    """``auto``: the first GPU when there is one, else the CPU; otherwise as named."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def file_reason(path: str, message: str) -> str:
    """A bad file's reason for a listing that names the file: without the file name in front
    and the data-config hints of a database run (``data.on_bad``; ``data.max_pixels`` is
    ``max_pixels`` here)."""
    reason = message.removeprefix("decode: ").removeprefix(f"{path}: ")
    return reason.replace(SKIP_HINT, "").replace("data.max_pixels", "max_pixels")


def load_scorer(ckpt: str | Path, database: str | None = None) -> tuple[IQAModule, str, dict]:
    """``(model, database, recipe)``: a trained checkpoint, the training database whose eval
    transform and MOS scale score new images (``database``; None = its only one), that database's
    recipe (``data.scoring_recipe``); a multi-head model scores with that database's head."""
    path = Path(ckpt).expanduser()
    if not path.is_file():
        raise MissingFileError(
            f"ckpt={ckpt}: no such checkpoint; give a trained run's checkpoints/<name>.ckpt"
        )
    model = load_iqa_module(str(path))
    database, recipe = database_recipe(model.scoring_recipe, database, str(path))
    if model.database_heads and model.head_names:  # heads by database, not MSLIQA's zoom levels
        if database not in model.head_names:
            raise ConfigError(
                f"database={database}: ckpt={path} has heads {model.head_names}; pick one"
            )
        model.active_head = database
    return model, database, recipe


def file_dataset(
    model: IQAModule,
    paths: Sequence[Path],
    transform,
    *,
    references: Mapping[Path, Path] | None = None,
    max_pixels: int | None = None,
) -> IQADataset:
    """``paths`` as a dataset of the test split's kind (absolute paths; a file that cannot be
    decoded becomes a ``bad`` marker, not an error); item ``i``'s ``index`` is ``i``."""
    records = pd.DataFrame({"image": [os.path.abspath(p) for p in paths], "mos": np.nan})
    if references is not None:
        records["reference"] = [os.path.abspath(references[Path(p)]) for p in paths]
    dataset = IQADataset(
        records, "/", transform, bad_inputs=BadInputs("skip"), max_pixels=max_pixels, split="score"
    )
    dataset.needs = frozenset(model.needs)
    return dataset


def _on(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def score_files(
    model: IQAModule,
    paths: Sequence[Path],
    transform,
    *,
    references: Mapping[Path, Path] | None = None,
    collate: str = "stack",
    batch_size: int = 32,
    num_workers: int = 0,
    max_pixels: int | None = None,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, dict[int, str]]:
    """``(scores, errors)``: the model's score of each of ``paths`` on its normalised scale (NaN
    where it failed) and, by position, why a file failed. ``references``: each image's
    reference, for a model that needs one."""
    dataset = file_dataset(model, paths, transform, references=references, max_pixels=max_pixels)
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=IQACollate(collate)
    )
    positions: dict[str, list[int]] = {}
    for position, image in enumerate(dataset.images):
        positions.setdefault(image, []).append(position)
    scores = np.full(len(paths), np.nan)
    errors: dict[int, str] = {}
    model.eval().to(device)
    with torch.inference_mode(), Progress(len(paths), "iqa-score", unit="img") as bar:
        for batch in loader:
            for bad in batch["bad_inputs"]:
                for position in positions[bad["image"]]:
                    errors[position] = file_reason(bad["image"], bad["reason"])
            if len(batch["index"]):
                predicted = model.predict_batch(_on(batch, device)).float().cpu().numpy()
                scores[batch["index"].numpy()] = predicted
            bar.advance(len(batch["index"]) + len(batch["bad_inputs"]))
    return scores, errors
