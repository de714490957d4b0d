"""LIVE Image Quality Assessment Database, release 2 (Sheikh, Sabir & Bovik, IEEE TIP 2006):
29 references, 982 entries in five distortion folders.

Official layout: ``dmos_realigned.mat`` (``dmos_new``, ``dmos_std``, ``orgs``) and/or ``dmos.mat``
(``dmos``, ``orgs``), ``refnames_all.mat`` (``refnames_all``: the reference of each entry),
``refimgs/`` and the folders ``jp2k/ jpeg/ wn/ gblur/ fastfading/``, each with ``img1.bmp``...
and an ``info.txt`` of ``<reference> <image> <distortion parameter>`` lines. The score vectors
run over the folders in that order (227 + 233 + 174 + 174 + 174 = 982 entries, ``imgK.bmp`` of a
folder at its offset + K). ``orgs == 1`` marks entries that are copies of their reference.
Scores are DMOS (lower = better).

``reference`` (for full-reference metrics) is ``refimgs/<refnames_all entry>`` (``reference_dir``);
an ``orgs == 1`` entry (kept with ``include_references``) is its own reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from iqa_lab.data.label_files import LabelFileError, decode_text, load_mat_field, require_file
from iqa_lab.data.records import make_records


def _dmos_file(data_dir: Path, dmos_files: Mapping[str, str]) -> tuple[Path, str]:
    """The first of ``dmos_files`` (file name → score variable) present under ``data_dir``."""
    for name, variable in dmos_files.items():
        if (data_dir / name).is_file():
            return data_dir / name, variable
    raise LabelFileError(
        f"{data_dir}: none of the LIVE score files {list(dmos_files)} found; set "
        f"data.data_dir to the LIVE release 2 folder (databaserelease2)"
    )


def _info(path: Path) -> dict[str, float]:
    """``info.txt`` of a folder: image name (lower case) → distortion parameter."""
    levels = {}
    for number, line in enumerate(decode_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue  # the release has blank lines between entries in some folders
        try:
            levels[fields[1].lower()] = float(fields[2])
        except (IndexError, ValueError) as err:
            raise LabelFileError(
                f"{path}: line {number} is not '<reference> <image> <parameter>': {line!r}"
            ) from err
    return levels


def parse_live(
    data_dir,
    dmos_files: Mapping[str, str],
    std_variable: str | None,
    refnames_file: str,
    folders: Mapping[str, int],
    include_references: bool,
    mos_range,
    lower_better: bool,
    db: str = "live",
    reference_dir: str = "refimgs",
) -> pd.DataFrame:
    """Records of LIVE release 2 under ``data_dir``; entries with ``orgs == 1`` (copies of the
    references) only when ``include_references``."""
    data_dir = Path(data_dir)
    dmos_path, variable = _dmos_file(data_dir, dmos_files)
    dmos = load_mat_field(dmos_path, variable).astype(float)
    orgs = load_mat_field(dmos_path, "orgs").astype(float)
    std = np.full(len(dmos), np.nan)
    if std_variable:
        try:
            std = load_mat_field(dmos_path, std_variable).astype(float)
        except LabelFileError:
            pass  # dmos.mat has no standard deviations; dmos_realigned.mat has
    refnames_path = require_file(data_dir / refnames_file, "LIVE reference names")
    refnames = load_mat_field(refnames_path, "refnames_all")
    total = sum(folders.values())
    for path, name, values in (
        (dmos_path, variable, dmos),
        (dmos_path, "orgs", orgs),
        (dmos_path, std_variable, std),
        (refnames_path, "refnames_all", refnames),
    ):
        if len(values) != total:
            raise LabelFileError(
                f"{path}: '{name}' has {len(values)} entries; LIVE release 2 has "
                f"{total} ({dict(folders)})"
            )
    rows = []
    for folder, count in folders.items():
        info_path = require_file(data_dir / folder / "info.txt", f"LIVE '{folder}' info.txt")
        levels = _info(info_path)
        missing = [f"img{k}.bmp" for k in range(1, count + 1) if f"img{k}.bmp" not in levels]
        if missing:
            raise LabelFileError(
                f"{info_path}: no line for {len(missing)} image(s), e.g. {missing[:3]}"
            )
        for k in range(1, count + 1):
            rows.append(
                {
                    "image": f"{folder}/img{k}.bmp",
                    "dist_type": folder,
                    "dist_level": levels[f"img{k}.bmp"],
                }
            )
    frame = pd.DataFrame(rows)
    frame["mos_raw"] = dmos
    frame["mos_std"] = std
    frame["ref"] = [Path(str(name).strip()).stem for name in refnames]
    frame["reference"] = [f"{reference_dir}/{str(name).strip()}" for name in refnames]
    copies = np.asarray(orgs == 1)
    frame.loc[copies, "reference"] = frame.loc[copies, "image"]
    if not include_references:
        frame = frame[~copies]
    records = make_records(frame, db=db, mos_range=mos_range, lower_better=lower_better)
    records["reference"] = frame["reference"].to_numpy()
    return records
