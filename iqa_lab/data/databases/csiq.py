"""CSIQ (Larson & Chandler, J. Electronic Imaging 2010): 30 references, 866 distorted images of
six types at four or five levels.

Official layout: ``csiq.DMOS.xlsx`` whose sheet ``all_by_image`` holds a table (offset from the
sheet's top-left corner) with columns ``image, dst_idx, dst_type, dst_lev, dmos_std, dmos``;
``src_imgs/<image>.png`` references and ``dst_imgs/<folder>/<image>.<TAG>.<level>.png`` distorted
images, where ``dst_type`` names folder and tag as in ``DST_TYPES``. A CSV export of that sheet
reads the same. DMOS on 0..1, lower = better.

``reference`` (for full-reference metrics) is ``src_imgs/<image>.png`` (``reference_dir``).
"""

from __future__ import annotations

from numbers import Number
from pathlib import Path

import pandas as pd

from iqa_lab.data.label_files import LabelFileError, read_table, require_columns, require_file
from iqa_lab.data.records import make_records

# dst_type in the spreadsheet → (folder under dst_imgs, tag in the file name).
DST_TYPES = {
    "noise": ("awgn", "AWGN"),
    "jpeg": ("jpeg", "JPEG"),
    "jpeg 2000": ("jpeg2000", "jpeg2000"),
    "fnoise": ("fnoise", "fnoise"),
    "blur": ("blur", "BLUR"),
    "contrast": ("contrast", "contrast"),
}
COLUMNS = ["image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"]


def _image_id(value) -> str:
    # Excel stores the reference "1600" as a number.
    if isinstance(value, Number) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def read_dmos_table(path: Path, sheet: str) -> pd.DataFrame:
    """The DMOS table of ``csiq.DMOS.xlsx`` (sheet ``sheet``) or of its CSV export, wherever it
    starts in the sheet: the header is the first row naming ``image`` and ``dmos``."""
    excel = path.suffix.lower() in (".xlsx", ".xls")
    try:
        raw = read_table(path, header=None, **({"sheet_name": sheet} if excel else {}))
    except LabelFileError as err:
        if excel and "Worksheet" in str(err):
            raise LabelFileError(f"{path}: no sheet '{sheet}' ({err})") from err
        raise
    cells = raw.map(lambda v: str(v).strip().lower() if isinstance(v, str) else v)
    header = [i for i, row in cells.iterrows() if {"image", "dmos"} <= set(row.dropna())]
    if not header:
        raise LabelFileError(
            f"{path}: no header row with 'image' and 'dmos' (expected columns "
            f"{COLUMNS}). Is this the original csiq.DMOS.xlsx?"
        )
    top = header[0]
    table = raw.iloc[top + 1 :].copy()
    table.columns = [str(c).strip() if isinstance(c, str) else None for c in cells.iloc[top]]
    table = table.loc[:, [c is not None for c in table.columns]]
    table = require_columns(table, COLUMNS, path)
    return table.dropna(subset=["image"]).reset_index(drop=True)


def parse_csiq(
    data_dir,
    label_file: str,
    sheet: str,
    image_dir: str,
    mos_range,
    lower_better: bool,
    db: str = "csiq",
    reference_dir: str = "src_imgs",
) -> pd.DataFrame:
    """Records of CSIQ from ``label_file`` under ``data_dir``."""
    path = require_file(Path(data_dir) / label_file, "CSIQ label file csiq.DMOS.xlsx")
    table = read_dmos_table(path, sheet)
    kinds = table["dst_type"].astype(str).str.strip().str.lower()
    unknown = sorted(set(kinds) - set(DST_TYPES))
    if unknown:
        raise LabelFileError(f"{path}: unknown dst_type {unknown}; expected {list(DST_TYPES)}")
    dmos = pd.to_numeric(table["dmos"], errors="coerce")
    levels = pd.to_numeric(table["dst_lev"], errors="coerce")
    bad = table.index[dmos.isna() | levels.isna()]
    if len(bad):
        raise LabelFileError(
            f"{path}: rows for images {table.loc[bad, 'image'].head(5).tolist()} "
            f"lack a numeric dmos or dst_lev"
        )
    refs = table["image"].map(_image_id)
    folders = kinds.map(lambda k: DST_TYPES[k][0])
    tags = kinds.map(lambda k: DST_TYPES[k][1])
    frame = pd.DataFrame(
        {
            "image": image_dir
            + "/"
            + folders
            + "/"
            + refs
            + "."
            + tags
            + "."
            + levels.astype(int).astype(str)
            + ".png",
            "mos_raw": dmos.astype(float),
            "mos_std": pd.to_numeric(table["dmos_std"], errors="coerce").astype(float),
            "ref": refs,
            "dist_type": folders,
            "dist_level": levels.astype(float),
        }
    )
    records = make_records(frame, db=db, mos_range=mos_range, lower_better=lower_better)
    records["reference"] = (reference_dir + "/" + refs + ".png").to_numpy()
    return records
