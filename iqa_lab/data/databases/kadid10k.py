"""KADID-10k (Lin, Hosu & Saupe, QoMEX 2019): 81 references x 25 distortion types x 5 levels.

Official layout: ``dmos.csv`` (header ``dist_img,ref_img,dmos,var``) and ``images/`` holding the
distorted images ``I01_01_01.png`` (reference 01, type 01, level 01) and the references ``I01.png``.

The ``dmos`` column is, despite its name, a mean opinion score on 1..5 with higher = better: the
raters judged each distorted image against its reference on a degradation category scale
(5 imperceptible .. 1 very annoying). ``var`` is the variance of the ratings, so
``mos_std = sqrt(var)``.

``reference`` (for full-reference metrics) is the row's ``ref_img`` in the images folder, e.g.
``images/I01.png``.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from iqa_lab.data.label_files import LabelFileError, read_table, require_columns, require_file
from iqa_lab.data.records import make_records

# The 25 types in KADID-10k's numbering (the synthetic database uses the same names).
KADID_TYPES = (
    "gaussian_blur",
    "lens_blur",
    "motion_blur",
    "color_diffusion",
    "color_shift",
    "color_quantization",
    "color_saturation_1",
    "color_saturation_2",
    "jpeg2000",
    "jpeg",
    "white_noise",
    "white_noise_color_component",
    "impulse_noise",
    "multiplicative_noise",
    "denoise",
    "brighten",
    "darken",
    "mean_shift",
    "jitter",
    "non_eccentricity_patch",
    "pixelate",
    "quantization",
    "color_block",
    "high_sharpen",
    "contrast_change",
)
_NAME = re.compile(r"^(I\d+)_(\d+)_(\d+)\.png$", re.IGNORECASE)


def parse_kadid10k(
    data_dir, label_file: str, image_dir: str, mos_range, lower_better: bool, db: str = "kadid10k"
) -> pd.DataFrame:
    """Records of KADID-10k from ``label_file`` (its ``dmos.csv``) under ``data_dir``."""
    path = require_file(f"{data_dir}/{label_file}", "KADID-10k label file dmos.csv")
    table = require_columns(
        read_table(path, dtype={"dist_img": str, "ref_img": str}),
        ["dist_img", "ref_img", "dmos", "var"],
        path,
    )
    parts = table["dist_img"].str.strip().str.extract(_NAME)
    bad = table.loc[parts[0].isna(), "dist_img"]
    if len(bad):
        raise LabelFileError(
            f"{path}: {len(bad)} dist_img names do not follow I<ref>_<type>_"
            f"<level>.png, e.g. {bad.head(3).tolist()}"
        )
    types = parts[1].astype(int)
    if not types.between(1, len(KADID_TYPES)).all():
        raise LabelFileError(
            f"{path}: distortion type ids outside 1..{len(KADID_TYPES)}: "
            f"{sorted(set(types) - set(range(1, len(KADID_TYPES) + 1)))}"
        )
    frame = pd.DataFrame(
        {
            "image": image_dir + "/" + table["dist_img"].str.strip(),
            "mos_raw": pd.to_numeric(table["dmos"], errors="coerce"),
            "mos_std": np.sqrt(pd.to_numeric(table["var"], errors="coerce")),
            # The reference column names the content; strip the extension so ids read "I01".
            "ref": table["ref_img"].str.strip().str.rsplit(".", n=1).str[0].str.upper(),
            "dist_type": [KADID_TYPES[t - 1] for t in types],
            "dist_level": parts[2].astype(int).astype(float),
        }
    )
    if frame["mos_raw"].isna().any():
        rows = frame.index[frame["mos_raw"].isna()].tolist()
        raise LabelFileError(f"{path}: non-numeric dmos in data rows {rows[:5]}")
    records = make_records(frame, db=db, mos_range=mos_range, lower_better=lower_better)
    # The references sit beside the distorted images (images/I01.png).
    records["reference"] = (image_dir + "/" + table["ref_img"].str.strip()).to_numpy()
    return records
