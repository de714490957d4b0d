"""BID, the Blurred Image Database (Ciancio et al., IEEE TIP 2011): 586 photos with realistic blur
(out of focus, simple and complex motion), rated in the laboratory on a 0..5 scale.

Official layout: ``DatabaseGrades.xls`` (first sheet, columns ``Image Number`` and
``Average Subjective Grade``; an .xlsx or CSV export of it reads the same) and
``ImageDatabase/DatabaseImage0001.JPG`` .. ``DatabaseImage0586.JPG`` (the image number, four
digits). No standard deviations are published.
"""

from __future__ import annotations

import pandas as pd

from iqa_lab.data.label_files import (
    LabelFileError,
    first_present,
    image_paths_under,
    read_table,
    require_columns,
)
from iqa_lab.data.records import make_records

NUMBER, GRADE = "Image Number", "Average Subjective Grade"


def parse_bid(
    data_dir,
    label_files,
    image_dir: str,
    name_format: str,
    mos_range,
    lower_better: bool,
    db: str = "bid",
) -> pd.DataFrame:
    """Records of BID from the first of ``label_files`` found under ``data_dir``; image file
    names are ``name_format.format(image number)``."""
    path = first_present(data_dir, label_files, "BID grades file DatabaseGrades.xls")
    table = require_columns(read_table(path), [NUMBER, GRADE], path)
    table = table.dropna(how="all")  # Excel sheets often end with empty formatted rows
    numbers = pd.to_numeric(table[NUMBER], errors="coerce")
    bad = table.loc[numbers.isna() | (numbers % 1 != 0), NUMBER]
    if len(bad):
        raise LabelFileError(
            f"{path}: '{NUMBER}' must hold whole numbers; found {bad.head(5).tolist()}"
        )
    frame = pd.DataFrame(
        {
            "image": image_paths_under(image_dir, numbers.astype(int).map(name_format.format)),
            "mos_raw": pd.to_numeric(table[GRADE], errors="coerce"),
        }
    )
    return make_records(frame, db=db, mos_range=mos_range, lower_better=lower_better)
