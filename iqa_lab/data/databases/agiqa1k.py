"""AGIQA-1k (Zhang et al., ICME 2023): 1,080 AI-generated images (stable diffusion v2.0 via
deepai, stable inpainting v1.0 via dreamStudio) with a normalised MOS on 0..5.

Official layout (github.com/lcysyzxdxc/AGIQA-1k-Database): ``AIGC_all.csv`` (``Image,Score``;
also published as ``AIGC_MOS_Zscore.xlsx``) and the images of the authors' ``file.zip``, unpacked
into ``image_dir``. No standard deviations are published.
"""

from __future__ import annotations

import pandas as pd

from iqa_lab.data.label_files import image_paths_under, read_table, require_columns, require_file
from iqa_lab.data.records import make_records


def parse_agiqa1k(
    data_dir, label_file: str, image_dir: str, mos_range, lower_better: bool, db: str = "agiqa1k"
) -> pd.DataFrame:
    """Records of AGIQA-1k from ``label_file`` (``AIGC_all.csv``) under ``data_dir``."""
    path = require_file(f"{data_dir}/{label_file}", "AGIQA-1k label file AIGC_all.csv")
    table = require_columns(read_table(path, dtype={"Image": str}), ["Image", "Score"], path)
    frame = pd.DataFrame(
        {
            "image": image_paths_under(image_dir, table["Image"]),
            "mos_raw": pd.to_numeric(table["Score"], errors="coerce"),
        }
    )
    return make_records(frame, db=db, mos_range=mos_range, lower_better=lower_better)
