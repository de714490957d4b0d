"""The images a command is asked to score (``iqa-score inputs=…``): files, folders (searched
recursively for image files, by extension) and CSV files listing paths (a ``path`` or ``image``
column; relative paths are taken from the CSV's folder). A named file that does not exist is kept:
it is reported as a failure with the others, not a reason to stop.

``match_references`` pairs each image with the file of the same name in a reference folder
(full-reference metrics)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from iqa_lab.data.images import IMAGE_SUFFIXES
from iqa_lab.errors import ConfigError, MissingFileError

PATH_COLUMNS = ("path", "image")


def _from_csv(path: Path) -> list[Path]:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ConfigError(f"inputs={path}: not a readable CSV ({err})") from None
    column = next((c for c in PATH_COLUMNS if c in table.columns), None)
    if column is None:
        raise ConfigError(
            f"inputs={path}: the CSV has columns {list(table.columns)}; name the column of "
            f"image paths 'path' or 'image'"
        )
    names = [name.strip() for name in table[column] if name.strip()]
    return [path.parent / name for name in names]


def _from_folder(folder: Path) -> list[Path]:
    found = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not found:
        raise ConfigError(
            f"inputs={folder}: no image files in the folder or below it "
            f"(extensions {sorted(IMAGE_SUFFIXES)})"
        )
    return found


def list_images(inputs: str | Sequence[str] | None) -> list[Path]:
    """Every image named by ``inputs`` (one entry or several), in the order given: a folder's
    files sorted by path."""
    entries = [inputs] if isinstance(inputs, (str, Path)) else list(inputs or [])
    if not entries:
        raise ConfigError("inputs= is empty: give image files, folders or a CSV of paths")
    images: list[Path] = []
    for entry in map(Path, entries):
        if entry.is_dir():
            images.extend(_from_folder(entry))
        elif entry.suffix.lower() == ".csv":
            if not entry.is_file():
                raise MissingFileError(f"inputs={entry}: no such CSV file")
            images.extend(_from_csv(entry))
        else:
            images.append(entry)
    return images


def match_references(images: Sequence[Path], folder: str | Path) -> dict[Path, Path | str]:
    """For each image, the file of the same name anywhere under ``folder``, or the reason there
    is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"reference={folder}: no such folder of reference images")
    by_name: dict[str, list[Path]] = {}
    for path in folder.rglob("*"):
        if path.is_file():
            by_name.setdefault(path.name, []).append(path)
    matched: dict[Path, Path | str] = {}
    for image in images:
        candidates = by_name.get(image.name, [])
        if len(candidates) == 1:
            matched[image] = candidates[0]
        elif candidates:
            matched[image] = f"several references named {image.name} under {folder}"
        else:
            matched[image] = f"no reference named {image.name} under {folder}"
    return matched
