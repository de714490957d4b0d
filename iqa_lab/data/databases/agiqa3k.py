"""AGIQA-3k (Li et al., IEEE TCSVT 2023): 2,982 AI-generated images from six text-to-image models,
with a perceptual-quality MOS and a text-alignment MOS (each a z-score mean rescaled to roughly
0..5, with its standard deviation).

Official layout (github.com/lcysyzxdxc/AGIQA-3k-Database): ``data.csv``
(``name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,std_align``) and the images from
the authors' archive, unpacked into ``image_dir``. The quality score is the label
(``mos_column``/``std_column`` choose the alignment score instead).
"""

from __future__ import annotations

import pandas as pd

from iqa_lab.data.label_files import image_paths_under, read_table, require_columns, require_file
from iqa_lab.data.records import make_records


def parse_agiqa3k(
    data_dir,
    label_file: str,
    image_dir: str,
    mos_column: str,
    std_column: str,
    mos_range,
    lower_better: bool,
    db: str = "agiqa3k",
) -> pd.DataFrame:
    """Records of AGIQA-3k from ``label_file`` (``data.csv``) under ``data_dir``."""
    path = require_file(f"{data_dir}/{label_file}", "AGIQA-3k label file data.csv")
    table = require_columns(
        read_table(path, dtype={"name": str}), ["name", mos_column, std_column], path
    )
    frame = pd.DataFrame(
        {
            "image": image_paths_under(image_dir, table["name"]),
            "mos_raw": pd.to_numeric(table[mos_column], errors="coerce"),
            "mos_std": pd.to_numeric(table[std_column], errors="coerce"),
        }
    )
    return make_records(frame, db=db, mos_range=mos_range, lower_better=lower_better)
