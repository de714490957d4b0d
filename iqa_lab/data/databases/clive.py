"""LIVE In the Wild Image Quality Challenge (CLIVE; Ghadiyaram & Bovik, IEEE TIP 2016): 1,162
photos from mobile devices, each rated by about 175 crowd workers on a 0..100 slider.

Official layout (ChallengeDB_release): ``Data/AllImages_release.mat`` (variable
``AllImages_release``, a 1169x1 cell of file names), ``Data/AllMOS_release.mat``
(``AllMOS_release``, 1x1169), ``Data/AllStdDev_release.mat`` (``AllStdDev_release``, 1x1169) and
``Images/``. The first seven entries (``t1.bmp`` .. ``t7.bmp``, stored in
``Images/trainingImages/``) are the images shown to train the raters; they are left out as
usual (``include_training_images: false``), which leaves 1,162 images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from iqa_lab.data.label_files import LabelFileError, image_paths_under, load_mat_field
from iqa_lab.data.records import make_records


def parse_clive(
    data_dir,
    names_file: str,
    mos_file: str,
    std_file: str | None,
    image_dir: str,
    training_images: int,
    training_image_dir: str,
    include_training_images: bool,
    mos_range,
    lower_better: bool,
    db: str = "clive",
) -> pd.DataFrame:
    """Records of CLIVE from its three .mat files under ``data_dir``."""
    data_dir = Path(data_dir)
    names = load_mat_field(data_dir / names_file, "AllImages_release")
    mos = load_mat_field(data_dir / mos_file, "AllMOS_release").astype(float)
    std = (
        load_mat_field(data_dir / std_file, "AllStdDev_release").astype(float)
        if std_file and (data_dir / std_file).is_file()
        else np.full(len(mos), np.nan)
    )
    if not len(names) == len(mos) == len(std):
        raise LabelFileError(
            f"{data_dir}: {names_file} lists {len(names)} images but "
            f"{mos_file} has {len(mos)} scores and {std_file} {len(std)}; "
            f"are these files from the same release?"
        )
    names = pd.Series([str(n) for n in names])
    frame = pd.DataFrame(
        {
            "image": pd.concat(
                [
                    image_paths_under(training_image_dir, names[:training_images]),
                    image_paths_under(image_dir, names[training_images:]),
                ]
            ),
            "mos_raw": mos,
            "mos_std": std,
        }
    )
    if not include_training_images:
        frame = frame.iloc[training_images:]
    return make_records(frame, db=db, mos_range=mos_range, lower_better=lower_better)
