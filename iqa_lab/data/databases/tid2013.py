"""TID2013 (Ponomarenko et al., Signal Processing: Image Communication 2015): 25 references x 24
distortion types x 5 levels = 3,000 distorted images.

Official layout: ``mos_with_names.txt`` (one ``<mos> <file name>`` per line, e.g.
``5.51429 I01_01_1.bmp``), ``mos_std.txt`` (one standard deviation per line, same order),
``distorted_images/`` and ``reference_images/``. MOS is on 0..9, higher = better.

The release mixes the case of names and extensions (the 25th reference is ``i25_...`` in places,
``I25.BMP`` in others): ``ref`` is normalised to ``I25`` here so one content is one id whatever
the label says; finding the file whatever its case on disk is the bad-input screen's job.

``reference`` (for full-reference metrics) is ``reference_images/<file>`` (``reference_dir``),
the reference ``I<nn>``'s file as found in that folder whatever its case (``I01.BMP``,
``i25.bmp``), or the canonical ``I<nn>.BMP`` when the folder or the file is absent.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from iqa_lab.data.label_files import LabelFileError, read_table, require_file
from iqa_lab.data.records import make_records

# The 24 types in TID2013's numbering (its readme).
TID2013_TYPES = (
    "additive_gaussian_noise",
    "additive_noise_color_components",
    "spatially_correlated_noise",
    "masked_noise",
    "high_frequency_noise",
    "impulse_noise",
    "quantization_noise",
    "gaussian_blur",
    "image_denoising",
    "jpeg",
    "jpeg2000",
    "jpeg_transmission_errors",
    "jpeg2000_transmission_errors",
    "non_eccentricity_pattern_noise",
    "local_block_wise_distortions",
    "mean_shift",
    "contrast_change",
    "color_saturation_change",
    "multiplicative_gaussian_noise",
    "comfort_noise",
    "lossy_compression_of_noisy_images",
    "color_quantization_with_dither",
    "chromatic_aberrations",
    "sparse_sampling_and_reconstruction",
)
_NAME = re.compile(r"^i(\d+)_(\d+)_(\d+)\.bmp$", re.IGNORECASE)


def _read_std(path: Path, count: int) -> np.ndarray:
    table = read_table(path, sep=r"\s+", header=None)
    if table.shape != (count, 1):
        raise LabelFileError(
            f"{path}: expected {count} lines with one standard deviation each "
            f"(the order of mos_with_names.txt), found a {table.shape} table"
        )
    return pd.to_numeric(table[0], errors="coerce").to_numpy(dtype=float)


def _reference_files(folder: Path, numbers) -> list[str]:
    """The file name of reference ``I<nn>`` for each of ``numbers``: as stored in ``folder``
    whatever its case (the release has ``I01.BMP`` beside ``i25.bmp``), else ``I<nn>.BMP``."""
    on_disk = {}
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):  # two spellings of one name: the first, sorted
            if entry.is_file():
                on_disk.setdefault(entry.name.lower(), entry.name)
    names = {}
    for number in set(numbers):
        canonical = f"I{number:02d}.BMP"
        names[number] = (
            canonical
            if (folder / canonical).is_file()
            else on_disk.get(canonical.lower(), canonical)
        )
    return [names[number] for number in numbers]


def parse_tid2013(
    data_dir,
    label_file: str,
    std_file: str | None,
    image_dir: str,
    mos_range,
    lower_better: bool,
    db: str = "tid2013",
    reference_dir: str = "reference_images",
) -> pd.DataFrame:
    """Records of TID2013 from ``label_file`` (``mos_with_names.txt``) and, where the release
    has it, ``std_file`` (``mos_std.txt``) under ``data_dir``."""
    path = require_file(Path(data_dir) / label_file, "TID2013 label file mos_with_names.txt")
    table = read_table(path, sep=r"\s+", header=None, dtype=str)
    if table.shape[1] != 2 or table[1].isna().any():
        raise LabelFileError(
            f"{path}: expected lines '<mos> <file name>' such as "
            f"'5.51429 I01_01_1.bmp', found {table.shape[1]} field(s) per line"
        )
    names = table[1].str.strip()
    parts = names.str.extract(_NAME)
    bad = names[parts[0].isna()]
    if len(bad):
        raise LabelFileError(
            f"{path}: {len(bad)} names do not follow I<ref>_<type>_<level>.bmp, "
            f"e.g. {bad.head(3).tolist()}"
        )
    mos = pd.to_numeric(table[0], errors="coerce")
    if mos.isna().any():
        raise LabelFileError(
            f"{path}: non-numeric MOS on line(s) {(mos.index[mos.isna()] + 1).tolist()[:5]}"
        )
    types = parts[1].astype(int)
    if not types.between(1, len(TID2013_TYPES)).all():
        raise LabelFileError(f"{path}: distortion type ids outside 1..{len(TID2013_TYPES)}")
    std = np.full(len(table), np.nan)
    if std_file and (Path(data_dir) / std_file).is_file():
        std = _read_std(Path(data_dir) / std_file, len(table))
    frame = pd.DataFrame(
        {
            "image": image_dir + "/" + names,
            "mos_raw": mos.to_numpy(dtype=float),
            "mos_std": std,
            "ref": "I" + parts[0].astype(int).map("{:02d}".format),
            "dist_type": [TID2013_TYPES[t - 1] for t in types],
            "dist_level": parts[2].astype(int).astype(float),
        }
    )
    records = make_records(frame, db=db, mos_range=mos_range, lower_better=lower_better)
    references = _reference_files(Path(data_dir) / reference_dir, parts[0].astype(int).tolist())
    records["reference"] = [f"{reference_dir}/{name}" for name in references]
    return records
