"""SPAQ, Smartphone Photography Attribute and Quality (Fang et al., CVPR 2020): 11,125 photos
from 66 smartphones, rated in the laboratory on a 0..100 scale (plus five attribute scores).

Official layout: ``Annotations/MOS and Image attribute scores.xlsx`` (columns ``Image name, MOS,
Brightness, Colorfulness, Contrast, Noisiness, Sharpness``; its CSV export, which starts with a
UTF-8 BOM, reads the same) and ``TestImage/00001.jpg`` ... No standard deviations are published.

The photos are large (up to 4000x3000 and more), so ``resize_short_side`` (e.g. 512, the size the
SPAQ authors train on) scales every image once to that short side into
``<cache_dir>/spaq-<size>/`` (EXIF orientation applied, the way the raters saw the photo; JPEG at
quality 95 without chroma subsampling), and images are read from there; the copies are written
atomically and reused by later runs. ``null`` reads the originals. ``data=spaq`` instantiates
``iqa_lab.data.spaq_datamodule.SPAQDataModule``.
"""

from __future__ import annotations

import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image, ImageOps

from iqa_lab.data.database import IQADatabase
from iqa_lab.data.label_files import first_present, image_paths_under, read_table, require_columns
from iqa_lab.data.records import make_records
from iqa_lab.files import atomic_path

log = logging.getLogger(__name__)

NAME, MOS = "Image name", "MOS"


def parse_spaq(
    data_dir, label_files, image_dir: str, mos_range, lower_better: bool, db: str = "spaq"
) -> pd.DataFrame:
    """Records of SPAQ from the first of ``label_files`` found under ``data_dir``."""
    path = first_present(data_dir, label_files, "SPAQ label file 'MOS and Image attribute scores'")
    table = require_columns(read_table(path, dtype={NAME: str}), [NAME, MOS], path)
    table = table.dropna(subset=[NAME])
    frame = pd.DataFrame(
        {
            "image": image_paths_under(image_dir, table[NAME]),
            "mos_raw": pd.to_numeric(table[MOS], errors="coerce"),
        }
    )
    return make_records(frame, db=db, mos_range=mos_range, lower_better=lower_better)


def resize_copy(source: Path, target: Path, short_side: int) -> None:
    """Write ``source`` scaled to ``short_side`` (never enlarged) as ``target``, atomically. A
    source that cannot be decoded is copied unchanged, so the bad-input screening reports its
    actual problem (truncated, not an image, ...) under ``data.on_bad``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        try:
            with Image.open(source) as image:
                # JPEG decodes at 1/2, 1/4 or 1/8 scale when that still covers the target size.
                width, height = image.size
                scale = short_side / min(width, height)
                if scale < 1:
                    image.draft("RGB", (round(width * scale), round(height * scale)))
                image = ImageOps.exif_transpose(image).convert("RGB")
                width, height = image.size
                scale = short_side / min(width, height)
                if scale < 1:
                    image = image.resize(
                        (round(width * scale), round(height * scale)), Image.Resampling.LANCZOS
                    )
                image.save(tmp, format="JPEG", quality=95, subsampling=0)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            log.warning(
                "%s: cannot be resized (%s); copied as it is for the bad-input screening",
                source,
                err,
            )
            tmp.unlink(missing_ok=True)
            shutil.copyfile(source, tmp)


def is_current(copy: Path, source: Path) -> bool:
    """A copy made after the last change of its source."""
    return copy.is_file() and copy.stat().st_mtime_ns >= source.stat().st_mtime_ns


def resize_into_cache(
    source_dir: Path, cache_dir: Path, images, short_side: int, workers: int | None = None
) -> int:
    """Resized copies of ``images`` (paths relative to ``source_dir``) under ``cache_dir``,
    made once: current copies are kept, sources that do not exist are skipped (the screening
    reports them missing). Returns how many copies were written now."""
    todo = [
        image
        for image in images
        if (source_dir / image).is_file() and not is_current(cache_dir / image, source_dir / image)
    ]
    if not todo:
        return 0
    log.info(
        "SPAQ: scaling %d images to a short side of %d into %s (once; reused later)",
        len(todo),
        short_side,
        cache_dir,
    )
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        list(
            pool.map(
                lambda image: resize_copy(source_dir / image, cache_dir / image, short_side), todo
            )
        )
    return len(todo)


class SPAQDatabase(IQADatabase):
    """SPAQ's records and files (``parse_spaq``), optionally read from resized copies
    (``spaq_datamodule.SPAQDataModule`` trains on them; ``iqa-check`` reads them without torch).

    With ``resize_short_side`` set, ``source_dir`` keeps the database folder and ``data_dir``
    becomes the folder of the copies (images keep their relative paths)."""

    def __init__(self, resize_short_side: int | None, cache_dir: str, **kwargs):
        super().__init__(**kwargs)
        self.resize_short_side = resize_short_side
        self.source_dir = self.data_dir
        self.resized_dir = (
            Path(cache_dir).expanduser() / f"spaq-{resize_short_side}"
            if resize_short_side
            else None
        )

    def load_records(self) -> pd.DataFrame:
        self.data_dir = self.source_dir
        records = super().load_records()
        if self.resized_dir is not None:
            resize_into_cache(
                self.source_dir, self.resized_dir, records["image"], self.resize_short_side
            )
            self.data_dir = self.resized_dir
        return records
