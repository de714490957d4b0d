"""BIQ2021 (Ahmed & Asif, J. Electronic Imaging 2022): 12,000 authentically distorted photos
(three sub-sets, file names ``ss01 (1).jpg`` ..), MOS on 0..1, higher = better.

Official layout (github.com/nisarahmedrana/BIQ2021): ``Images/`` and the split files
``Train (Images and MOS).csv`` / ``Test (Images and MOS).csv`` with header ``Image Name,MOS``
(the training file as ``Image Name,MOS,,``: two empty trailing columns). Rows of the training file
get ``set = train``, rows of the test file ``set = test``; either file may be absent (a copy with
only the training images), not both. Names are reported as labelled: a label whose file differs in
case only (``ss02 (1014).jpg`` stored as ``.JPG``) is resolved by the bad-input screening.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from iqa_lab.data.label_files import LabelFileError, image_paths_under, read_table, require_columns
from iqa_lab.data.records import make_records

NAME, MOS = "Image Name", "MOS"


def parse_biq2021(
    data_dir,
    split_files: Mapping[str, str],
    image_dir: str,
    mos_range,
    lower_better: bool,
    db: str = "biq2021",
) -> pd.DataFrame:
    """Records of BIQ2021 from ``split_files`` (file → official set) found under ``data_dir``."""
    frames = []
    for name, split in split_files.items():
        path = Path(data_dir) / name
        if not path.is_file():
            continue
        table = require_columns(read_table(path, dtype={NAME: str}), [NAME, MOS], path)
        table = table.dropna(subset=[NAME])
        frames.append(
            pd.DataFrame(
                {
                    "image": image_paths_under(image_dir, table[NAME]),
                    "mos_raw": pd.to_numeric(table[MOS], errors="coerce"),
                    "set": split,
                }
            )
        )
    if not frames:
        raise LabelFileError(
            f"{data_dir}: no BIQ2021 label file (looked for {list(split_files)}); "
            f"set data.data_dir to the folder the database's authors distribute"
        )
    return make_records(
        pd.concat(frames, ignore_index=True), db=db, mos_range=mos_range, lower_better=lower_better
    )
