"""Reading databases' label files as their authors published them: CSV/TXT in whatever encoding
(UTF-8 with or without BOM, else Windows-1252 with a warning), Excel sheets, and MATLAB .mat files.

Every error names the file and what to do about it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from iqa_lab.errors import IQALabError

log = logging.getLogger(__name__)

# utf-8-sig reads plain UTF-8 too and strips a BOM (SPAQ's CSV export starts with one).
_FALLBACK_ENCODINGS = ("cp1252", "latin-1")


class LabelFileError(IQALabError, ValueError):
    """A label file that is missing or cannot be read; the message names the file and the fix."""


def require_file(path: str | Path, what: str) -> Path:
    """``path`` if it exists, else a LabelFileError saying which database file is expected."""
    path = Path(path)
    if not path.is_file():
        raise LabelFileError(
            f"{path}: {what} not found; set data.data_dir to the folder the "
            f"database's authors distribute (it holds this file)"
        )
    return path


def decode_text(path: str | Path) -> str:
    """The text of ``path``: UTF-8 (BOM stripped) or, failing that, Windows-1252 with a warning."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        for encoding in _FALLBACK_ENCODINGS:
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError:
                continue
            log.warning(
                "%s is not UTF-8 (%s); read it as %s. Re-save it as UTF-8 to silence this warning.",
                path,
                err,
                encoding,
            )
            return text
    raise LabelFileError(f"{path}: cannot decode as UTF-8 or {_FALLBACK_ENCODINGS}")


def read_table(path: str | Path, **read_kwargs) -> pd.DataFrame:
    """A CSV/TXT (any of the encodings above) or .xlsx/.xls sheet as a DataFrame.

    ``read_kwargs`` go to ``pandas.read_csv`` or ``pandas.read_excel``."""
    from io import StringIO

    path = Path(path)
    try:
        if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
            return pd.read_excel(path, **read_kwargs)
        return pd.read_csv(StringIO(decode_text(path)), **read_kwargs)
    except (LabelFileError, FileNotFoundError):
        raise
    except (ValueError, ImportError, pd.errors.ParserError) as err:
        raise LabelFileError(f"{path}: cannot be read as a table ({err})") from err


def require_columns(frame: pd.DataFrame, columns, path: str | Path) -> pd.DataFrame:
    """``frame`` if it has every column in ``columns`` (names stripped of spaces), else an error
    listing the missing ones and the ones found."""
    frame = frame.rename(columns=lambda c: str(c).strip())
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise LabelFileError(
            f"{path}: missing column(s) {missing}; found {list(frame.columns)}. "
            f"Is this the database's original label file?"
        )
    return frame


def load_mat_field(path: str | Path, key: str) -> np.ndarray:
    """Variable ``key`` of a MATLAB .mat file, squeezed; cell arrays of strings become ``str``."""
    from scipy.io import loadmat

    path = require_file(path, f"MATLAB file with '{key}'")
    try:
        content = loadmat(path, squeeze_me=True, simplify_cells=True)
    except (ValueError, NotImplementedError, OSError) as err:
        raise LabelFileError(f"{path}: cannot be read as a .mat file ({err})") from err
    if key not in content:
        found = sorted(k for k in content if not k.startswith("__"))
        raise LabelFileError(f"{path}: no variable '{key}'; found {found}")
    value = content[key]
    if isinstance(value, (list, tuple)):
        value = np.array([str(v).strip() if isinstance(v, str) else v for v in value], dtype=object)
    return np.atleast_1d(np.asarray(value))


def first_present(data_dir: str | Path, names, what: str) -> Path:
    """The first of ``names`` (paths relative to ``data_dir``) that is a file, else a
    LabelFileError listing every name tried. Databases whose authors published the labels in
    several forms (xlsx and its CSV export, two KonIQ files) name them in order of preference."""
    names = [names] if isinstance(names, (str, Path)) else list(names)
    for name in names:
        path = Path(data_dir) / name
        if path.is_file():
            return path
    raise LabelFileError(
        f"{Path(data_dir)}: {what} not found (looked for {names}); set "
        f"data.data_dir to the folder the database's authors distribute"
    )


def image_paths_under(folder: str | None, names: pd.Series) -> pd.Series:
    """``folder/name`` for each name (names stripped of spaces), POSIX style; ``folder`` of
    None, "" or "." leaves the names as they are (images beside the label file)."""
    names = names.astype(str).str.strip()
    folder = str(folder).strip().strip("/") if folder is not None else ""
    if folder in ("", "."):
        return names
    return folder + "/" + names
