"""FLIVE, the LIVE-FB database of PaQ-2-PiQ (Ying et al., CVPR 2020): 39,810 pictures of many
sizes from AVA, VOC, EMOTIC, CERTH blur and EE371R, rated by crowd workers on a 0..100 scale, and
three patches cropped from each picture, rated separately ("FLIVE patches", ~120,000).

Official layout (the ``database/`` folder of github.com/baidut/PaQ-2-PiQ and
github.com/niu-haoran/FLIVE_Database, images from the authors' download):

- ``labels_image.csv`` (``name,mos``; names carry the sub-folder, e.g.
  ``voc_emotic_ava/AVA__1234.jpg``, ``blur_dataset/motion0044.jpg``, ``EE371R/rq59.jpg``);
- ``labels_patch.csv`` (``name,mos``): every patch, named ``patches/<picture file>_patch_<k>.jpg``
  (``patches/AVA__1234.jpg_patch_1.jpg``, k = 1..3), the files the authors' ``database_prep``
  notebook crops into ``patches/``. This is the patch database StairIQA trains on;
- ``labels640.csv``: the 1,827 test pictures larger than 640 pixels, one row each with
  ``name_image``, ``mos_image`` and, for k = 1..3, ``mos_patch_k`` and the patch box
  ``top_patch_k, left_patch_k, bottom_patch_k, right_patch_k`` (pixels of the picture;
  ``width_/height_patch_k`` are the box size). As a patch label file it gives only those 5,481
  patches (the dataset crops the boxes from the pictures);
- ``labels=640_padded.csv``: the training pictures (at most 640 pixels) with ``is_valid``.

Official split (``official_split``; used where its files are present): the pictures of
``labels640.csv`` are the test set; ``is_valid`` rows of ``labels=640_padded.csv`` are validation;
the rest is training. Pictures are matched by file name.

Content ids: a picture's ``ref`` is its file name, and so is the ``ref`` of each of its patches;
with ``pictures_db`` set (``conf/data/flive_patches.yaml``: ``flive``) the patch records also name
the pictures' database as their content group (``content_db``), so every protocol draws a picture
and its patches to the same side, alone or in ``data=mixed`` beside the pictures.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from iqa_lab.data.label_files import (
    LabelFileError,
    image_paths_under,
    read_table,
    require_columns,
    require_file,
)
from iqa_lab.data.protocols import CONTENT_DB
from iqa_lab.data.records import BOX_COLUMNS, RECORD_COLUMNS, make_records

PATCHES = (1, 2, 3)
_PATCH_FILE = r"^(?P<picture>.+)_patch_\d+\.[A-Za-z]+$"


def _basename(names: pd.Series) -> pd.Series:
    return names.astype(str).str.strip().str.rsplit("/", n=1).str[-1]


def official_sets(data_dir, official_split: Mapping | None, pictures: pd.Series) -> pd.Series:
    """The official set of each picture (file name or path): ``test`` for the pictures of
    ``official_split.test_file``, ``val`` for the rows of ``val_file`` with ``is_valid`` true,
    ``train`` otherwise; all ``""`` when the test file is absent (no official split)."""
    sets = pd.Series("", index=pictures.index, dtype=object)
    official_split = dict(official_split or {})
    test_file = official_split.get("test_file")
    if not test_file or not (Path(data_dir) / test_file).is_file():
        return sets
    path = Path(data_dir) / test_file
    test = require_columns(read_table(path, dtype={"name_image": str}), ["name_image"], path)
    names = _basename(pictures)
    sets[:] = "train"
    val_file = official_split.get("val_file")
    if val_file and (Path(data_dir) / val_file).is_file():
        path = Path(data_dir) / val_file
        val = require_columns(
            read_table(path, dtype={"name_image": str}), ["name_image", "is_valid"], path
        )
        valid = val["is_valid"].astype(str).str.strip().str.lower().isin(["true", "1"])
        sets[names.isin(set(_basename(val.loc[valid, "name_image"])))] = "val"
    sets[names.isin(set(_basename(test["name_image"])))] = "test"
    return sets


def parse_flive(
    data_dir,
    label_file: str,
    image_dir: str | None,
    official_split: Mapping | None,
    mos_range,
    lower_better: bool,
    db: str = "flive",
) -> pd.DataFrame:
    """Records of the FLIVE pictures from ``label_file`` (``labels_image.csv``)."""
    path = require_file(Path(data_dir) / label_file, "FLIVE label file labels_image.csv")
    table = require_columns(read_table(path, dtype={"name": str}), ["name", "mos"], path)
    table = table.dropna(subset=["name"])
    frame = pd.DataFrame(
        {
            "image": image_paths_under(image_dir, table["name"]),
            "mos_raw": pd.to_numeric(table["mos"], errors="coerce"),
            "ref": _basename(table["name"]),
            "set": official_sets(data_dir, official_split, table["name"]),
        }
    )
    return make_records(frame, db=db, mos_range=mos_range, lower_better=lower_better)


def _box_patches(table: pd.DataFrame, path: Path, image_dir: str | None) -> pd.DataFrame:
    """One row per patch of a ``labels640.csv``-style table: the picture, its box and score."""
    columns = ["name_image"] + [f"{c}_patch_{k}" for k in PATCHES for c in ("mos",) + BOX_COLUMNS]
    table = require_columns(table, columns, path).dropna(subset=["name_image"])
    frames = []
    for k in PATCHES:
        boxes = table[[f"{c}_patch_{k}" for c in BOX_COLUMNS]].apply(pd.to_numeric, errors="coerce")
        if boxes.isna().any().any() or (boxes % 1 != 0).any().any():
            rows = table.index[boxes.isna().any(axis=1) | (boxes % 1 != 0).any(axis=1)]
            raise LabelFileError(
                f"{path}: patch {k} boxes must be whole pixel numbers; rows "
                f"{rows[:5].tolist()} are not"
            )
        boxes.columns = list(BOX_COLUMNS)
        frames.append(
            pd.DataFrame(
                {
                    "order": table.index * len(PATCHES) + k - 1,
                    "image": image_paths_under(image_dir, table["name_image"]),
                    "mos_raw": pd.to_numeric(table[f"mos_patch_{k}"], errors="coerce"),
                    "picture": table["name_image"].astype(str).str.strip(),
                    **{c: boxes[c].astype(int) for c in BOX_COLUMNS},
                }
            )
        )
    patches = pd.concat(frames).sort_values("order").drop(columns="order")
    bad = patches[
        (patches["bottom"] <= patches["top"])
        | (patches["right"] <= patches["left"])
        | (patches[["top", "left"]] < 0).any(axis=1)
    ]
    if len(bad):
        raise LabelFileError(
            f"{path}: empty or negative patch boxes for {bad['picture'].head(5).tolist()}"
        )
    return patches.reset_index(drop=True)


def _file_patches(table: pd.DataFrame, path: Path, image_dir: str | None) -> pd.DataFrame:
    """One row per patch file of a ``labels_patch.csv``-style table (``name,mos``)."""
    table = table.dropna(subset=["name"])
    parts = _basename(table["name"]).str.extract(_PATCH_FILE)
    bad = table.loc[parts["picture"].isna(), "name"]
    if len(bad):
        raise LabelFileError(
            f"{path}: patch names must read patches/<picture>_patch_<k>.jpg; "
            f"found {bad.head(3).tolist()}"
        )
    return pd.DataFrame(
        {
            "image": image_paths_under(image_dir, table["name"]),
            "mos_raw": pd.to_numeric(table["mos"], errors="coerce"),
            "picture": parts["picture"],
        }
    ).reset_index(drop=True)


def parse_flive_patches(
    data_dir,
    label_file: str,
    image_dir: str | None,
    official_split: Mapping | None,
    mos_range,
    lower_better: bool,
    db: str = "flive_patches",
    pictures_db: str | None = None,
) -> pd.DataFrame:
    """Records of the FLIVE patches from ``label_file``: ``labels_patch.csv`` (patch files) or
    ``labels640.csv`` (boxes in the pictures: records carry ``top, left, bottom, right`` and the
    dataset crops the box). ``pictures_db``: the pictures' database, whose content ids the
    patches share (``content_db``)."""
    path = require_file(
        Path(data_dir) / label_file,
        "FLIVE patch label file (labels_patch.csv; or data.label_file=labels640.csv)",
    )
    table = read_table(path, dtype={"name_image": str, "name": str})
    table = table.rename(columns=lambda c: str(c).strip())
    if "name_image" in table:
        patches = _box_patches(table, path, image_dir)
    elif {"name", "mos"} <= set(table.columns):
        patches = _file_patches(table, path, image_dir)
    else:
        raise LabelFileError(
            f"{path}: neither the labels640.csv columns (name_image, "
            f"mos_patch_k, top_patch_k, ...) nor labels_patch.csv's (name, mos); "
            f"found {list(table.columns)}"
        )
    patches["ref"] = _basename(patches["picture"])
    patches["set"] = official_sets(data_dir, official_split, patches["picture"])
    if pictures_db:
        patches[CONTENT_DB] = pictures_db
    records = make_records(patches, db=db, mos_range=mos_range, lower_better=lower_better)
    extra = [c for c in (*BOX_COLUMNS, CONTENT_DB) if c in patches]
    return pd.concat([records, patches[extra]], axis=1)[RECORD_COLUMNS + extra]
