"""KonIQ-10k (Hosu, Lin, Sziranyi & Saupe, IEEE TIP 2020): 10,073 in-the-wild photos from
YFCC100m, each rated by about 120 crowd workers on a 1..5 scale.

The authors publish two label files (https://database.mmsp-kn.de/koniq-10k-database.html and
github.com/subpic/koniq):

- ``koniq10k_distributions_sets.csv``: ``image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,set`` with MOS
  on the 0..100 scale and the official split in ``set`` (training / validation / test =
  7,058 / 1,000 / 2,015);
- ``koniq10k_scores_and_distributions.csv``: ``image_name,c1,...,c_total,MOS,SD,MOS_zscore`` where
  ``MOS`` is the 1..5 mean rating and ``MOS_zscore`` the 0..100 score the papers report.

Both give SD, the standard deviation of the ratings on the 1..5 rating scale; it is kept as
``mos_std`` as published (not rescaled to the 0..100 MOS, which is a z-score mapping of the mean).
The rating histogram ``c1..c5`` (fractions of the 1..5 ratings) is kept as ``hist_1..hist_5``
(``records.histogram_columns``): batches carry it as ``histogram`` for distribution models.
Images: ``1024x768/`` (or the ``512x384/`` release), named as ``image_name``.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from iqa_lab.data.label_files import (
    LabelFileError,
    first_present,
    image_paths_under,
    read_table,
    require_columns,
)
from iqa_lab.data.records import HISTOGRAM_PREFIX, make_records

SETS = {"training": "train", "validation": "val", "test": "test"}
HISTOGRAM = [f"c{k}" for k in range(1, 6)]


def parse_koniq10k(
    data_dir,
    label_files: Mapping[str, str],
    image_dir: str,
    mos_range,
    lower_better: bool,
    db: str = "koniq10k",
) -> pd.DataFrame:
    """Records of KonIQ-10k from the first of ``label_files`` (file → its 0..100 MOS column)
    found under ``data_dir``."""
    path = first_present(data_dir, list(label_files), "KonIQ-10k label file")
    mos_column = label_files[path.name]
    table = require_columns(
        read_table(path, dtype={"image_name": str}), ["image_name", mos_column, "SD"], path
    )
    frame = pd.DataFrame(
        {
            "image": image_paths_under(image_dir, table["image_name"]),
            "mos_raw": pd.to_numeric(table[mos_column], errors="coerce"),
            "mos_std": pd.to_numeric(table["SD"], errors="coerce"),
        }
    )
    if "set" in table:
        sets = table["set"].astype(str).str.strip().str.lower()
        unknown = sorted(set(sets) - set(SETS))
        if unknown:
            raise LabelFileError(
                f"{path}: unknown values {unknown} in column 'set'; expected {list(SETS)}"
            )
        frame["set"] = sets.map(SETS)
    records = make_records(frame, db=db, mos_range=mos_range, lower_better=lower_better)
    if set(HISTOGRAM) <= set(table.columns):
        for k, column in enumerate(HISTOGRAM, start=1):
            records[f"{HISTOGRAM_PREFIX}{k}"] = pd.to_numeric(table[column], errors="coerce")
    return records
