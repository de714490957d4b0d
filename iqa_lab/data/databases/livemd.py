"""LIVE Multiply Distorted (Jayaraman, Mittal, Moorthy & Bovik, Asilomar 2012): 15 references,
each blurred then JPEG-compressed (Part 1) or blurred then noised (Part 2); 225 images per part.

Official layout, per part: ``Part N/Imagelists.mat`` (``distimgs``: N x 1 cell of file names such
as ``babygirl_blur1_jpeg2.bmp``), ``Part N/Scores.mat`` (``DMOSscores``, same order) and the images
in ``Part 1/blurjpeg/`` / ``Part 2/blurnoise/`` next to their references (``babygirl.bmp``). Both
parts distort the same 15 references, so ``ref`` is the reference's name alone. DMOS, lower =
better.

``dist_type`` names the distortions present (``blur+jpeg``, ``blur``, ``noise`` ...) and
``dist_level`` is the sum of their stages from the file name (``blur2_jpeg3`` → 5).
``reference`` (for full-reference metrics) is the reference beside the image in its part's folder
(``Part 1/blurjpeg/babygirl.bmp`` for ``Part 1/blurjpeg/babygirl_blur1_jpeg2.bmp``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from iqa_lab.data.label_files import LabelFileError, load_mat_field
from iqa_lab.data.records import make_records

_NAME = re.compile(r"^(?P<ref>.+?)(?P<stages>(?:_[a-z]+\d+)+)\.bmp$", re.IGNORECASE)
_STAGE = re.compile(r"_([a-z]+)(\d+)", re.IGNORECASE)


def _part(data_dir: Path, part: str, folder: str, list_file: str, score_file: str) -> pd.DataFrame:
    list_path, score_path = data_dir / part / list_file, data_dir / part / score_file
    names = [str(name).strip() for name in load_mat_field(list_path, "distimgs")]
    dmos = load_mat_field(score_path, "DMOSscores").astype(float)
    if len(names) != len(dmos):
        raise LabelFileError(
            f"{score_path}: {len(dmos)} DMOSscores for the {len(names)} distimgs of {list_path}"
        )
    rows = []
    for name, score in zip(names, dmos):
        match = _NAME.match(name)
        if not match:
            raise LabelFileError(
                f"{list_path}: '{name}' does not follow <reference>_<distortion><stage>[_...].bmp"
            )
        stages = _STAGE.findall(match["stages"])
        rows.append(
            {
                "image": f"{part}/{folder}/{name}",
                "mos_raw": score,
                "ref": match["ref"],
                "dist_type": "+".join(kind.lower() for kind, _ in stages),
                "dist_level": float(sum(int(stage) for _, stage in stages)),
                "reference": f"{part}/{folder}/{match['ref']}.bmp",
            }
        )
    return pd.DataFrame(rows)


def parse_livemd(
    data_dir,
    parts: Mapping[str, str],
    list_file: str,
    score_file: str,
    mos_range,
    lower_better: bool,
    db: str = "livemd",
) -> pd.DataFrame:
    """Records of LIVE-MD under ``data_dir``; ``parts`` maps each part's folder to its image
    folder (``Part 1`` → ``blurjpeg``)."""
    frame = pd.concat(
        [
            _part(Path(data_dir), part, folder, list_file, score_file)
            for part, folder in parts.items()
        ],
        ignore_index=True,
    )
    records = make_records(frame, db=db, mos_range=mos_range, lower_better=lower_better)
    records["reference"] = frame["reference"].to_numpy()
    return records
