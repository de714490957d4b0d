"""IQADatabase: a database's records and files, without the training stack (no torch, no
Lightning), so that ``iqa-check`` reads a database in a light process.

It holds what a database config says about its files (``parser`` and its options, ``data_dir``,
MOS scale, ``on_bad``, ``max_pixels``, ``near_duplicates``) and reads them: ``load_records``, the
setup-cost screening ``find_bad_inputs``, the near-duplicate pass and the paths of images and
references. ``datamodule.IQADataModule`` adds splits, datasets and loaders on top, from the same
config; the loader keys it reads (``LOADER_KEYS``) are not this class's.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd
from hydra.utils import get_method
from omegaconf import DictConfig, ListConfig, OmegaConf

from iqa_lab.data.bad_inputs import BadInputError, BadInputs, bad_inputs_message
from iqa_lab.data.images import BadImageError, FileResolver, probe_image
from iqa_lab.data.leakage import PixelHashCache
from iqa_lab.data.near_duplicates import NearDuplicateSettings, find_near_duplicates
from iqa_lab.data.protocols import Protocol
from iqa_lab.data.records import (
    BOX_COLUMNS,
    DUPLICATE_LABELS,
    conflicting_duplicates,
    label_problems,
    later_listings,
)
from iqa_lab.errors import ConfigError

log = logging.getLogger(__name__)

# The data config keys only the loaders read (``IQADataModule.__init__``).
LOADER_KEYS = (
    "transforms",
    "batch_size",
    "eval_batch_size",
    "num_workers",
    "pin_memory",
    "collate",
    "train_views_per_epoch",
)
# Databases that fill the ``reference`` column, named in the refusal message.
WITH_REFERENCES = ("synthetic", "kadid10k", "tid2013", "live", "csiq", "livemd")


def with_box_ids(records: pd.DataFrame) -> pd.DataFrame:
    """``records`` whose ``image`` also names the box where a record has one, for the label
    checks that key items on ``image`` (three patches of one picture are three items)."""
    if not set(BOX_COLUMNS) <= set(records.columns):
        return records
    boxes = records[list(BOX_COLUMNS)]
    has_box = boxes.notna().all(axis=1)
    view = records.copy()
    view.loc[has_box, "image"] = (
        view.loc[has_box, "image"].astype(str)
        + " [box "
        + boxes[has_box].astype(int).astype(str).agg(",".join, axis=1)
        + "]"
    )
    return view


def resolve_parser(parser: str | Callable | None, options: Mapping) -> Callable | None:
    """The parser function a config names, checked against its options before any file is read."""
    if parser is None:
        if options:
            raise ConfigError(
                f"unknown data config keys {sorted(options)} (no data.parser takes them)"
            )
        return None
    function = get_method(parser) if isinstance(parser, str) else parser
    try:
        inspect.signature(function).bind(
            "data_dir", mos_range=(0, 1), lower_better=False, db="db", **options
        )
    except TypeError as err:
        raise ConfigError(
            f"data.parser={parser} does not take the data config's keys {sorted(options)}: {err}"
        ) from None
    return function


class IQADatabase:
    """A database's records and files as its config describes them (module docstring)."""

    def __init__(
        self,
        name: str,
        data_dir: str,
        parser: str | Callable | None = None,
        protocol: Mapping | None = None,
        mos_range: tuple = (0.0, 1.0),
        lower_better: bool = False,
        on_bad: str = "raise",
        duplicate_labels: str = "drop",
        max_pixels: int | None = 100_000_000,
        std_range: tuple | None = None,
        near_duplicates: Mapping | None = None,
        **parser_options,
    ):
        super().__init__()
        self.name = name
        self.data_dir = Path(data_dir).expanduser()
        self.parser_options = {
            key: OmegaConf.to_container(value, resolve=True)
            if isinstance(value, (DictConfig, ListConfig))
            else value
            for key, value in parser_options.items()
        }
        self.parser = resolve_parser(parser, self.parser_options)
        self.protocol = Protocol(**protocol) if protocol is not None else None
        self.mos_range = tuple(mos_range)
        self.lower_better = lower_better
        # The scale of the published MOS std when it differs from the MOS's (KonIQ: SD of the 1..5
        # ratings beside a 0..100 MOS); None = the MOS's own range.
        self.std_range = tuple(std_range) if std_range is not None else None
        self.bad = BadInputs(on_bad)
        if duplicate_labels not in DUPLICATE_LABELS:
            raise ConfigError(
                f"data.duplicate_labels must be one of {DUPLICATE_LABELS}, got '{duplicate_labels}'"
            )
        self.duplicate_labels = duplicate_labels
        self.max_pixels = max_pixels
        # Notes on records kept as they are (case-resolved names, wrong extensions).
        self.input_notes: list[dict] = []
        self.records: pd.DataFrame | None = None
        # Where the leakage guard caches pixel hashes (runs set paths.cache_dir); None: no cache.
        self.hash_cache_dir: str | None = None
        self._pixel_hashes: PixelHashCache | None = None
        # The near-duplicate pass (data.near_duplicates; None: none) and what it found.
        self.near_duplicate_settings = (
            NearDuplicateSettings(**near_duplicates) if near_duplicates is not None else None
        )
        self.near_duplicates: dict | None = None

    def prepare_data(self) -> None:
        """Make the files ready to read (a database built or resized into the cache first)."""

    @property
    def on_bad(self) -> str:
        return self.bad.on_bad

    @property
    def bad_inputs(self) -> list[dict]:
        """Items the bad-input policy dropped: ``{"image", "reason", "kind", ...}``."""
        return self.bad.items

    def normalised_std(self, records: pd.DataFrame) -> pd.Series:
        """``mos_std`` on the scale of the normalised ``mos`` (for the outlier ratio)."""
        lo, hi = self.std_range or self.mos_range
        return records["mos_std"].astype(float) / (float(hi) - float(lo))

    def load_records(self) -> pd.DataFrame:
        """Parse the database's files into the record schema (``data.records``)."""
        if self.parser is None:
            raise NotImplementedError(
                f"'{self.name}' has no parser: give data.parser="
                f"<module.parse_function>, or override load_records()"
            )
        return self.parser(
            self.data_dir,
            mos_range=self.mos_range,
            lower_better=self.lower_better,
            db=self.name,
            **self.parser_options,
        )

    @property
    def synthetic_labels(self) -> bool:
        """True when the labels are generated, not human opinion scores (said wherever shown)."""
        return False

    def _usable(self, records: pd.DataFrame, bad: list[dict]) -> pd.DataFrame:
        """``records``, or an error listing ``bad`` when nothing is left."""
        if records.empty:
            raise BadInputError(
                f"no usable records left in '{self.name}' ({self.data_dir}): "
                f"{bad_inputs_message(bad, len(bad), self.name)}"
            )
        return records

    def keep_first_listings(self, records: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
        """Under ``data.duplicate_labels=first``, ``records`` without the later rows of an image
        listed twice, and a note ``{"image", "note"}`` on each; else ``records`` unchanged (every
        row of such an image is then a label problem: ``records.label_problems``)."""
        if self.duplicate_labels != "first":
            return records, []
        later = later_listings(with_box_ids(records))
        notes = [{"image": item["image"], "note": item["note"]} for item in later]
        return records.drop(index=[item["index"] for item in later]), notes

    @property
    def pixel_hashes(self) -> PixelHashCache:
        """The pixel hashes of this database's files (cached in ``hash_cache_dir`` if set), shared
        by the conflicting-label check and the leakage guard so each file is decoded once."""
        if self._pixel_hashes is None:
            self._pixel_hashes = PixelHashCache(self.hash_cache_dir)
        return self._pixel_hashes

    def drop_conflicting_duplicates(self, records: pd.DataFrame) -> pd.DataFrame:
        """Refuse (``raise``) or drop (``skip``) every record whose file has the same decoded
        pixels as another file of its database but a different MOS (module docstring)."""
        paths = self.image_paths(records)
        hashes = pd.Series(self.pixel_hashes.hashes(list(paths)), index=records.index)
        bad = [
            {**item, "kind": "label", "db": records.at[item["index"], "db"]}
            for item in conflicting_duplicates(with_box_ids(records), hashes, paths)
        ]
        self.bad.refuse(bad, len(records), self.name)
        return self._usable(records.drop(index=[item["index"] for item in bad]), bad)

    def find_bad_inputs(self, records: pd.DataFrame) -> tuple[list[dict], list[dict], pd.Series]:
        """Setup-cost screening of every record (no decoding). Returns the bad records
        ``{"index", "image", "kind", "reason"}`` (kind: label, missing, unreadable), notes on good
        ones ``{"image", "note"}``, and the new ``image`` of case-resolved records (by index)."""
        bad = [{**problem, "kind": "label"} for problem in label_problems(with_box_ids(records))]
        skip = {item["index"] for item in bad}
        resolver = FileResolver()
        notes, resolved = [], {}
        for index, image, path in zip(records.index, records["image"], self.image_paths(records)):
            if index in skip:
                continue
            found = resolver.resolve(path)
            if found.path is None:
                bad.append(
                    {
                        "index": index,
                        "image": image,
                        "kind": "missing",
                        "reason": f"{path}: {found.reason}",
                    }
                )
                continue
            if found.note:
                depth = len(Path(image).parts)
                resolved[index] = Path(*found.path.parts[-depth:]).as_posix()
                notes.append({"image": image, "note": found.note})
            try:
                note = probe_image(found.path, self.max_pixels)
            except BadImageError as err:
                bad.append(
                    {"index": index, "image": image, "kind": "unreadable", "reason": str(err)}
                )
                continue
            if note:
                notes.append({"image": image, "note": note})
        return bad, notes, pd.Series(resolved, dtype=object)

    def find_near_duplicates(self, records: pd.DataFrame) -> pd.DataFrame:
        """Near-duplicate pairs (``data.near_duplicates``) within each database of ``records``
        whose images do not already share a ``ref``: ``db``, ``image_a``, ``image_b``,
        ``correlation``, ``psnr``; cached in ``hash_cache_dir`` if set."""
        settings = self.near_duplicate_settings
        frames = []
        for db, rows in records.groupby("db", sort=True) if settings and settings.enabled else []:
            rows = rows.assign(path=self.image_paths(rows).map(str)).drop_duplicates("path")
            image_of = dict(zip(rows["path"], rows["image"]))
            pairs = find_near_duplicates(
                list(image_of),
                settings,
                cache_dir=self.hash_cache_dir,
                name=str(db),
                groups=rows["ref"].astype(str).tolist(),
            )
            frames.append(
                pd.DataFrame(
                    {
                        "db": db,
                        "image_a": pairs["a"].map(image_of),
                        "image_b": pairs["b"].map(image_of),
                        "correlation": pairs["correlation"].round(6),
                        "psnr": pairs["psnr"].round(3),
                    }
                )
            )
        columns = ["db", "image_a", "image_b", "correlation", "psnr"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

    def image_paths(self, records: pd.DataFrame) -> pd.Series:
        """The file of each record."""
        return records["image"].map(lambda image: self.data_dir / image)

    def reference_paths(self, records: pd.DataFrame) -> pd.Series:
        """The reference image file of each record (``reference`` column, under ``data_dir``)."""
        self.require_references(records)
        return records["reference"].map(lambda reference: self.data_dir / reference)

    def require_references(self, records: pd.DataFrame) -> None:
        """Refuse, naming the database, records without a reference image."""
        has = records["reference"].notna() if "reference" in records else None
        if has is None or not has.any():
            raise ConfigError(
                f"database '{self.name}' gives no reference images, and the model "
                f"needs them (a full-reference model or metric). Databases with "
                f"references: {', '.join(WITH_REFERENCES)}; or use a no-reference "
                f"model"
            )
        if not has.all():
            missing = records.loc[~has, "image"].tolist()
            raise ValueError(
                f"{len(missing)} records of '{self.name}' have no reference image, "
                f"e.g. {missing[:5]}"
            )
