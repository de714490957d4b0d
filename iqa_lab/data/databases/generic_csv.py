"""``data=csv``: any database given as one table (CSV/TXT in any common encoding, or an
.xlsx/.xls sheet) with an image column and a score column, every name set in the config.

Optional columns: the score's standard deviation, a reference/content id (distortions of one
photo share it; the image itself when absent) and an official set whose values are mapped to
train / val / test by ``set_values``. ``mos_range`` and ``lower_better`` state the scale.
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
from iqa_lab.data.records import make_records

SPLITS = ("train", "val", "test")


def parse_csv_table(
    data_dir,
    label_file: str,
    image_column: str,
    mos_column: str,
    image_dir: str | None = None,
    std_column: str | None = None,
    ref_column: str | None = None,
    set_column: str | None = None,
    set_values: Mapping[str, str] | None = None,
    sheet: str | int | None = None,
    mos_range=(0.0, 1.0),
    lower_better: bool = False,
    db: str = "csv",
) -> pd.DataFrame:
    """Records from ``label_file`` under ``data_dir`` with the named columns."""
    path = require_file(Path(data_dir) / label_file, "label table (data.label_file)")
    excel = path.suffix.lower() in (".xlsx", ".xlsm", ".xls")
    kwargs = {"sheet_name": sheet if sheet is not None else 0} if excel else {}
    optional = [c for c in (std_column, ref_column, set_column) if c]
    table = read_table(
        path, dtype={c: str for c in [image_column] + optional if c != std_column}, **kwargs
    )
    table = require_columns(table, [image_column, mos_column, *optional], path)
    table = table.dropna(subset=[image_column])
    frame = pd.DataFrame(
        {
            "image": image_paths_under(image_dir, table[image_column]),
            "mos_raw": pd.to_numeric(table[mos_column], errors="coerce"),
        }
    )
    if std_column:
        frame["mos_std"] = pd.to_numeric(table[std_column], errors="coerce")
    if ref_column:
        frame["ref"] = table[ref_column].astype(str).str.strip()
    if set_column:
        values = table[set_column].fillna("").astype(str).str.strip()
        mapping = {**{s: s for s in SPLITS}, "": "", **dict(set_values or {})}
        unknown = sorted(set(values) - set(mapping))
        if unknown:
            raise LabelFileError(
                f"{path}: column '{set_column}' holds {unknown}; map them to "
                f"train / val / test with data.set_values"
            )
        frame["set"] = values.map(mapping)
        wrong = sorted(set(frame["set"]) - {*SPLITS, ""})
        if wrong:
            raise LabelFileError(f"data.set_values maps to {wrong}; allowed: {SPLITS} or ''")
    return make_records(frame, db=db, mos_range=mos_range, lower_better=lower_better)
