"""The record schema every database is parsed into (one row per image).

Columns: ``image`` (path relative to ``data_dir``), ``mos`` (normalised to [0, 1], higher = better),
``mos_raw`` (as published), ``mos_std`` (NaN if not given), ``ref`` (reference / content id; the
image itself when none), ``dist_type``, ``dist_level`` (empty / NaN if not given), ``set`` (official
split label, if any), ``db`` (database name).

Optional columns (``OPTIONAL_COLUMNS``): ``reference``, the path of the pristine reference image
under ``data_dir`` (databases that have references fill it: full-reference models and metrics read
it), a box in pixels cropped from the decoded image (``BOX_COLUMNS``, e.g. FLIVE's patches), and
the rating histogram ``hist_1..hist_K`` (fraction of ratings in each category, lowest first) of
databases that publish one (KonIQ-10k's ``c1..c5``): each batch then carries it as
``histogram``, ``(B, K)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from iqa_lab.errors import ConfigError
from iqa_lab.files import atomic_path

RECORD_COLUMNS = [
    "image",
    "mos",
    "mos_raw",
    "mos_std",
    "ref",
    "dist_type",
    "dist_level",
    "set",
    "db",
]
BOX_COLUMNS = ("top", "left", "bottom", "right")
HISTOGRAM_PREFIX = "hist_"
OPTIONAL_COLUMNS = ("reference", *BOX_COLUMNS)


def histogram_columns(records: pd.DataFrame) -> list[str]:
    """The rating-histogram columns of ``records`` (``hist_1..hist_K``), lowest category first;
    empty when it has none."""
    columns = [c for c in records.columns if str(c).startswith(HISTOGRAM_PREFIX)]
    return sorted(columns, key=lambda c: int(str(c).removeprefix(HISTOGRAM_PREFIX)))


# ``data.duplicate_labels``: what an image listed twice in the label files is.
DUPLICATE_LABELS = ("drop", "first")


def normalise_mos(raw, mos_range: tuple[float, float], lower_better: bool = False) -> np.ndarray:
    """Map published scores onto [0, 1] with higher = better (DMOS is flipped)."""
    lo, hi = float(mos_range[0]), float(mos_range[1])
    if not hi > lo:
        raise ConfigError(f"data.mos_range must be (low, high) with high > low, got {mos_range}")
    mos = (np.asarray(raw, dtype=float) - lo) / (hi - lo)
    return 1.0 - mos if lower_better else mos


def published_scale(normalised, mos_range: tuple[float, float], lower_better: bool = False):
    """The inverse of ``normalise_mos``: scores on [0, 1] (higher = better) back on the
    database's published scale (DMOS flipped back)."""
    lo, hi = float(mos_range[0]), float(mos_range[1])
    mos = np.asarray(normalised, dtype=float)
    return lo + ((1.0 - mos) if lower_better else mos) * (hi - lo)


def make_records(
    frame: pd.DataFrame, db: str, mos_range, lower_better: bool = False
) -> pd.DataFrame:
    """Complete a frame holding at least ``image`` and ``mos_raw`` into the full record schema."""
    missing = {"image", "mos_raw"} - set(frame.columns)
    if missing:
        raise ValueError(f"records of '{db}' lack columns {sorted(missing)}")
    out = frame.copy()
    out["mos"] = normalise_mos(out["mos_raw"], mos_range, lower_better)
    defaults = {
        "mos_std": np.nan,
        "ref": out["image"],
        "dist_type": "",
        "dist_level": np.nan,
        "set": "",
        "db": db,
    }
    for column, value in defaults.items():
        if column not in out:
            out[column] = value
    # Labels (NaN MOS, duplicates) are checked at DataModule setup, where data.on_bad decides.
    return check_schema(out[RECORD_COLUMNS].reset_index(drop=True))


def check_schema(records: pd.DataFrame) -> pd.DataFrame:
    """``records`` if they have every schema column, else a ValueError naming the missing ones."""
    missing = set(RECORD_COLUMNS) - set(records.columns)
    if missing:
        raise ValueError(f"records lack columns {sorted(missing)}; expected {RECORD_COLUMNS}")
    return records


def label_problems(records: pd.DataFrame) -> list[dict]:
    """Rows whose label cannot be used, as ``{"index", "image", "reason"}`` dicts: MOS not a finite
    number, or an image listed more than once (within one ``db``; every listing is reported, since
    which score is right is unknown)."""
    problems = []
    mos = pd.to_numeric(records["mos"], errors="coerce").astype(float)
    for index in records.index[~np.isfinite(mos.to_numpy())]:
        problems.append(
            {
                "index": index,
                "image": records.at[index, "image"],
                "reason": f"label: MOS is not a finite number "
                f"(mos_raw={records.at[index, 'mos_raw']})",
            }
        )
    keys = [records[c].astype(str) for c in ("db", "image")]
    dup = records[pd.concat(keys, axis=1).duplicated(keep=False)]
    for (_, image), group in dup.groupby(["db", "image"], sort=False):
        scores = ", ".join(str(v) for v in group["mos_raw"].tolist())
        for index in group.index:
            problems.append(
                {
                    "index": index,
                    "image": image,
                    "reason": f"label: image listed twice or more ({len(group)} rows, "
                    f"MOS {scores})",
                }
            )
    return problems


def later_listings(records: pd.DataFrame) -> list[dict]:
    """Rows that list an image already listed above it (within one ``db``), as ``{"index",
    "image", "note"}``: what ``data.duplicate_labels=first`` drops, keeping the first row."""
    key = records[["db", "image"]].astype(str).agg("\0".join, axis=1)
    first_mos = records.groupby(key, sort=False)["mos_raw"].transform("first")
    later = key.duplicated(keep="first")
    return [
        {
            "index": index,
            "image": records.at[index, "image"],
            "note": f"listed again: kept its first row (MOS {first_mos[index]}), dropped this "
            f"one (MOS {records.at[index, 'mos_raw']}) (data.duplicate_labels=first)",
        }
        for index in records.index[later]
    ]


def conflicting_duplicates(
    records: pd.DataFrame, hashes: pd.Series, paths: pd.Series
) -> list[dict]:
    """Rows whose file has the same decoded pixels (``hashes``, by index; None when unknown) as
    another file of the same ``db`` (and box) but a different MOS, as ``{"index", "image",
    "reason"}``: every row of such a group, since which score is right is unknown."""
    frame = records.assign(_hash=hashes, _path=paths.map(str))
    frame = frame[frame["_hash"].notna()]
    keys = ["db", "_hash", *[c for c in BOX_COLUMNS if c in frame]]
    frame = frame[frame.duplicated(keys, keep=False)]  # only shared pixels can conflict
    problems = []
    for _, group in frame.groupby(keys, sort=False, dropna=False):
        if group["_path"].nunique() < 2 or group["mos_raw"].nunique() < 2:
            continue
        listing = ", ".join(f"{i} (MOS {m})" for i, m in zip(group["image"], group["mos_raw"]))
        problems.extend(
            {
                "index": index,
                "image": image,
                "reason": f"label: identical pixels but different MOS: {listing}; give the "
                f"copies one MOS or remove all but one from the label file",
            }
            for index, image in zip(group.index, group["image"])
        )
    return problems


def validate_records(records: pd.DataFrame) -> pd.DataFrame:
    """Check the schema and the labels; raise naming the offending rows."""
    check_schema(records)
    bad = records[~np.isfinite(pd.to_numeric(records["mos"], errors="coerce").astype(float))]
    if len(bad):
        raise ValueError(
            f"{len(bad)} records have no finite MOS, e.g. {bad['image'].head(5).tolist()}"
        )
    dup = records[records[["db", "image"]].astype(str).duplicated(keep=False)]
    if len(dup):
        raise ValueError(
            f"{dup['image'].nunique()} images are listed twice, e.g. "
            f"{dup['image'].head(5).tolist()}"
        )
    return records


def write_records_csv(records: pd.DataFrame, path: str | Path) -> None:
    """Write records atomically (a half-written label file never appears)."""
    with atomic_path(path) as tmp:
        records[RECORD_COLUMNS].to_csv(tmp, index=False)


def read_records_csv(path: str | Path) -> pd.DataFrame:
    frame = pd.read_csv(
        path,
        keep_default_na=False,
        na_values=[""],
        dtype={"image": str, "ref": str, "dist_type": str, "set": str, "db": str},
    )
    for column in ("dist_type", "set"):
        frame[column] = frame[column].fillna("")
    return validate_records(frame)
