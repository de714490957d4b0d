"""IQADataModule: records (from a database parser) + protocol → datasets → loaders.

A plain database is a parser plus a config: ``parser: iqa_lab.data.databases.<name>.parse_<name>``
and the parser's options as further keys (``label_file``, ``image_dir``, …); this DataModule calls
``parser(data_dir, mos_range=…, lower_better=…, db=name, **options)``. Subclasses exist only where
behaviour differs (``synthetic``, ``mixed``, SPAQ's resized copies). The protocol is given once by
the entry point (``hydra.utils.instantiate(cfg.data, protocol=cfg.protocol)``).

What a model needs of a batch: every batch holds ``image``, ``mos``, ``index`` (``db`` under
``data=mixed``, ``mask`` under ``data.collate=pad``). A model that declares ``needs =
{"reference"}`` gets ``reference`` too, under the same geometric transform as the image
(``provide``, called when the model is set up; a database without references is refused there,
by name).

Bad input (``data.on_bad=raise|skip``, ``bad_inputs.BadInputs``), found in two places so setup
stays cheap:

1. At setup, ``screen_inputs`` checks every record without decoding: label problems (MOS not a
   finite number, an image listed twice: ``records.label_problems``), the file's existence (with a
   case-insensitive match when unique, e.g. BIQ2021's ``ss02 (1014).jpg`` stored as ``.JPG``; the
   record then points at the real file and the resolution is kept in ``input_notes``), and a probe
   of each file (``images.probe_image``: header, size under ``data.max_pixels``, the format's end
   marker, so truncated JPEG/PNG files are caught here). A 10k-image database costs seconds.
2. A file that passes the probe can still fail to decode (corrupt data inside). ``IQADataset``
   then raises ``BadImageError`` naming the file under ``raise``; under ``skip`` it returns a marker
   ``{"bad": {"image", "reason", "split"}}``, ``collate.IQACollate`` leaves it out of the batch and
   passes it on as ``batch["bad_inputs"]``, and ``on_before_batch_transfer`` (main process, so it
   works with worker processes) records it. A batch whose items were all bad arrives empty and the
   model skips it.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from hydra.utils import get_method
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset, RandomSampler

from iqa_lab.data.bad_inputs import BadInputError, BadInputs, bad_inputs_message  # noqa: F401
from iqa_lab.data.collate import IQACollate
from iqa_lab.data.images import BadImageError, FileResolver, load_rgb, probe_image
from iqa_lab.data.leakage import check_leakage
from iqa_lab.data.near_duplicates import (
    NearDuplicateSettings,
    find_near_duplicates,
    join_near_duplicates,
    straddling_pairs,
)
from iqa_lab.data.protocols import Protocol, assign_splits
from iqa_lab.data.records import BOX_COLUMNS, check_schema, label_problems, validate_records
from iqa_lab.data.transforms import build_transform
from iqa_lab.errors import ConfigError

log = logging.getLogger(__name__)

# What a model may declare it needs from a batch beyond the image (``IQAModule.needs``).
NEEDS = ("reference",)
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


class IQADataset(Dataset):
    """Decodes one image per item, lazily; returns the image tensor, its MOS and its row index,
    and its reference image when ``needs`` holds ``"reference"``.

    An image that fails to decode raises ``BadImageError`` (``on_bad=raise``) or becomes a
    ``{"bad": {"image", "reason", "split"}}`` marker that ``IQACollate`` drops (``skip``)."""

    def __init__(
        self,
        records: pd.DataFrame,
        data_dir: str | Path,
        transform,
        bad_inputs: BadInputs | None = None,
        max_pixels: int | None = None,
        split: str = "",
        db: str | None = None,
    ):
        self.images = records["image"].tolist()
        self.references = records["reference"].tolist() if "reference" in records else None
        self.mos = torch.tensor(records["mos"].to_numpy(), dtype=torch.float32)
        self.index = torch.tensor(records.index.to_numpy(), dtype=torch.long)
        self.data_dir = Path(data_dir)
        self.transform = transform
        self.bad_inputs = bad_inputs or BadInputs()
        self.max_pixels = max_pixels
        self.split = split
        self.boxes = (
            records[list(BOX_COLUMNS)].to_numpy(dtype=float)
            if set(BOX_COLUMNS) <= set(records.columns)
            else None
        )
        # The database name each item carries (data=mixed: which regressor head scores it).
        self.db = db
        # What the model asks for beyond the image (``IQADataModule.provide``).
        self.needs: frozenset[str] = frozenset()
        # Set per epoch (``set_augment_seed``): item i's random augmentation then depends on
        # (seed, i) only, not on the order, the process or the worker that loads it.
        self.augment_seed: int | None = None

    def set_augment_seed(self, seed: int | None) -> None:
        self.augment_seed = seed

    def _seed_transform(self, i: int) -> None:
        if self.augment_seed is not None and hasattr(self.transform, "set_random_seed"):
            item_seed = np.random.SeedSequence([self.augment_seed, i]).generate_state(1)[0]
            self.transform.set_random_seed(int(item_seed))

    def __len__(self) -> int:
        return len(self.images)

    def crop_box(self, i: int, image: np.ndarray) -> np.ndarray:
        """Item ``i``'s box of ``image`` when its record has one (``BOX_COLUMNS``)."""
        if self.boxes is None or not np.isfinite(self.boxes[i]).all():
            return image
        top, left, bottom, right = self.boxes[i].astype(int)
        if not (0 <= top < bottom <= image.shape[0] and 0 <= left < right <= image.shape[1]):
            raise BadImageError(
                f"{self.data_dir / self.images[i]}: box (top, left, bottom, "
                f"right) = {(top, left, bottom, right)} does not fit in the "
                f"{image.shape[1]}x{image.shape[0]} image"
            )
        return image[top:bottom, left:right]

    def _decode(self, i: int) -> dict[str, np.ndarray]:
        pixels = {
            "image": self.crop_box(i, load_rgb(self.data_dir / self.images[i], self.max_pixels))
        }
        if "reference" in self.needs:
            path = self.data_dir / self.references[i]
            reference = self.crop_box(i, load_rgb(path, self.max_pixels))
            if reference.shape != pixels["image"].shape:
                raise BadImageError(
                    f"{path}: the reference is {reference.shape[1]}x"
                    f"{reference.shape[0]}, its image {self.images[i]} is "
                    f"{pixels['image'].shape[1]}x{pixels['image'].shape[0]}; "
                    f"a full-reference model needs them aligned"
                )
            pixels["reference"] = reference
        return pixels

    def __getitem__(self, i: int) -> dict:
        try:
            pixels = self._decode(i)
        except BadImageError as err:
            fields = {} if self.db is None else {"db": self.db}
            return {"bad": self.bad_inputs.decode_failed(self.images[i], err, self.split, **fields)}
        self._seed_transform(i)
        item = {**self.transform(**pixels), "mos": self.mos[i], "index": self.index[i]}
        if self.db is not None:
            item["db"] = self.db
        return item


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


class IQADataModule(L.LightningDataModule):
    """The DataModule of every database. ``records`` after ``setup`` holds every record with its
    ``split``; ``bad_inputs`` the items ``on_bad=skip`` dropped."""

    def __init__(
        self,
        name: str,
        data_dir: str,
        transforms: Mapping,
        parser: str | Callable | None = None,
        protocol: Mapping | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        mos_range: tuple = (0.0, 1.0),
        lower_better: bool = False,
        on_bad: str = "raise",
        max_pixels: int | None = 100_000_000,
        collate: str = "stack",
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
        self.transform_cfg = {stage: dict(cfg) for stage, cfg in transforms.items()}
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.mos_range = tuple(mos_range)
        self.lower_better = lower_better
        # The scale of the published MOS std when it differs from the MOS's (KonIQ: SD of the 1..5
        # ratings beside a 0..100 MOS); None = the MOS's own range.
        self.std_range = tuple(std_range) if std_range is not None else None
        self.bad = BadInputs(on_bad)
        self.max_pixels = max_pixels
        self.collate = IQACollate(collate)
        # Notes on records kept as they are (case-resolved names, wrong extensions).
        self.input_notes: list[dict] = []
        self.records: pd.DataFrame | None = None
        # Where the leakage guard caches pixel hashes (runs set paths.cache_dir); None: no cache.
        self.hash_cache_dir: str | None = None
        # The near-duplicate pass (data.near_duplicates; None: none) and what it found.
        self.near_duplicate_settings = (
            NearDuplicateSettings(**near_duplicates) if near_duplicates is not None else None
        )
        self.near_duplicates: dict | None = None
        self.datasets: dict[str, IQADataset] = {}

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

    def setup(self, stage: str | None = None) -> None:
        if self.records is not None:
            return
        if self.protocol is None:
            raise ValueError(
                f"data '{self.name}' has no protocol to split by: the entry points "
                f"give it (hydra.utils.instantiate(cfg.data, protocol=cfg.protocol))"
            )
        records = check_schema(self.load_records().reset_index(drop=True))
        records = self.screen_inputs(records)
        validate_records(with_box_ids(records))
        pairs = self.find_near_duplicates(records)
        records = join_near_duplicates(records, pairs, self.protocol.name == "official")
        self.records = assign_splits(records, self.protocol)
        self.near_duplicates = self.near_duplicate_report(self.records, pairs)
        self.check_splits(self.records)
        self.build_datasets()

    def screen_inputs(self, records: pd.DataFrame) -> pd.DataFrame:
        """Check labels and files cheaply and apply ``on_bad`` (module docstring): the records to
        keep, with ``image`` pointing at the file actually found; bad items go to ``bad_inputs``."""
        bad, notes, resolved = self.find_bad_inputs(records)
        self.bad.refuse([{**item, "db": self.name} for item in bad], len(records), self.name)
        for note in notes:
            log.warning("%s: %s", note["image"], note["note"])
        records = records.drop(index=[item["index"] for item in bad])
        kept = resolved.index.intersection(records.index)
        records.loc[kept, "image"] = resolved[kept]
        self.input_notes.extend(notes)
        if records.empty:
            raise BadInputError(
                f"no usable records left in '{self.name}' ({self.data_dir}): "
                f"{bad_inputs_message(bad, len(bad), self.name)}"
            )
        return records

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

    def check_splits(self, records: pd.DataFrame) -> None:
        """Refuse splits that leak files, identical images or references across train / val /
        test (``data.leakage``); pixel hashes are cached in ``hash_cache_dir`` if set."""
        check_leakage(
            records,
            self.image_paths(records),
            cache_dir=self.hash_cache_dir,
            where=f"'{self.name}' under protocol={self.protocol.name}",
        )

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

    def near_duplicate_report(self, records: pd.DataFrame, pairs: pd.DataFrame) -> dict | None:
        """What the near-duplicate pass found (results.json ``near_duplicates``): its settings, the
        number of pairs, and those split between test and training (``straddling``: only
        under ``protocol=official``, where the database fixes the sides), with a warning."""
        settings = self.near_duplicate_settings
        if not settings or not settings.enabled:
            return None
        straddling = straddling_pairs(records, pairs)
        if straddling:
            log.warning(
                "'%s' under protocol=%s: %d near-duplicate pairs have one image in test and its "
                "twin in training (e.g. %s ~ %s); they are listed in results.json and the test "
                "metrics are also given without those test images (test_nodup/…)",
                self.name,
                self.protocol.name,
                len(straddling),
                straddling[0]["test_image"],
                straddling[0]["train_image"],
            )
        return {"settings": asdict(settings), "pairs": len(pairs), "straddling": straddling}

    @property
    def test_images_with_training_twin(self) -> set[tuple[str, str]]:
        """``(db, image)`` of the test images whose near-duplicate is in train / val."""
        straddling = (self.near_duplicates or {}).get("straddling", [])
        return {(item["db"], item["test_image"]) for item in straddling}

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

    def provide(self, needs) -> None:
        """Give every batch what the model needs beyond the image (``NEEDS``), or refuse."""
        needs = frozenset(needs or ())
        unknown = sorted(needs - set(NEEDS))
        if unknown:
            raise ValueError(
                f"a model needs {unknown} from its batches; a DataModule provides {list(NEEDS)}"
            )
        if "reference" in needs:
            self._check_reference_files()
        for dataset in self.all_datasets():
            dataset.needs = needs

    def _check_reference_files(self) -> None:
        """Records without a reference are refused by ``reference_paths``; missing reference
        files are refused at once (``raise``), or left to the decode step, which drops their
        records (``skip``)."""
        paths = self.reference_paths(self.records).drop_duplicates()
        missing = [str(path) for path in paths if not Path(path).is_file()]
        if not missing:
            return
        message = (
            f"{len(missing)} reference image(s) of '{self.name}' are missing, e.g. {missing[:5]}"
        )
        if not self.bad.skip:
            raise BadInputError(
                f"{message}; fix data.data_dir or set data.on_bad=skip to drop their records"
            )
        log.warning("%s; their records will be dropped when read (data.on_bad=skip)", message)

    def all_datasets(self) -> list[IQADataset]:
        """Every per-split dataset (the parts of a concatenated one included)."""
        return [
            part
            for dataset in self.datasets.values()
            for part in getattr(dataset, "datasets", [dataset])
        ]

    def build_datasets(self) -> None:
        for split in ("train", "val", "test"):
            self.datasets[split] = self.make_dataset(
                self.records[self.records["split"] == split], split
            )

    def make_dataset(self, rows: pd.DataFrame, split: str, db: str | None = None) -> IQADataset:
        """``rows`` of ``split`` as a dataset of this database: its folder, its transforms."""
        cfg = self.transform_cfg["train" if split == "train" else "eval"]
        return IQADataset(
            rows,
            self.data_dir,
            build_transform(split, **cfg),
            bad_inputs=self.bad,
            max_pixels=self.max_pixels,
            split=split,
            db=db,
        )

    @property
    def synthetic_labels(self) -> bool:
        """True when the labels are generated, not human opinion scores (said wherever shown)."""
        return False

    def split_sizes(self) -> dict[str, int]:
        return {split: len(ds) for split, ds in self.datasets.items()}

    def _per_device(self, batch_size: int) -> int:
        world = self.trainer.world_size if self.trainer is not None else 1
        if batch_size % world:
            raise ConfigError(
                f"data.batch_size / data.eval_batch_size {batch_size} is not divisible by the "
                f"{world} devices (trainer.devices); make it a multiple"
            )
        return batch_size // world

    def _epoch_seed(self) -> int:
        """The run's seed (``seed_everything``) combined with the current epoch."""
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return int(os.environ.get("PL_GLOBAL_SEED", 0)) + epoch

    def _loader(self, split: str, shuffle: bool, dataset=None) -> DataLoader:
        """A loader of ``split`` (or of ``dataset``). Training loaders are made anew each epoch
        (``trainer.reload_dataloaders_every_n_epochs: 1``): the order is the permutation
        ``DistributedSampler`` draws for (seed, epoch), so one process and DDP see the same global
        batches, and each item's augmentation is seeded by (seed, epoch, item). A run resumed
        from an epoch's checkpoint therefore continues exactly as the uninterrupted one."""
        dataset = self.datasets[split] if dataset is None else dataset
        size = self.batch_size if split == "train" else self.eval_batch_size
        reloading = bool(
            self.trainer is not None and self.trainer.reload_dataloaders_every_n_epochs
        )
        sampler = None
        if shuffle:
            seed = self._epoch_seed()
            # A loader kept for several epochs must not repeat each item's augmentation: then the
            # transforms draw from their own stream instead.
            for part in getattr(dataset, "datasets", [dataset]):
                part.set_augment_seed(seed if reloading else None)
            sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
        return DataLoader(
            dataset,
            batch_size=self._per_device(size),
            sampler=sampler,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0 and not reloading,
            drop_last=False,
        )

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """Move the items that failed to decode (``on_bad=skip``) from the batch into
        ``bad_inputs`` (once per image, however many epochs meet it)."""
        if isinstance(batch, dict) and batch.get("bad_inputs") is not None:
            for item in batch.pop("bad_inputs"):
                self.bad.add(item)
        return batch

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        # selection=test (paper parity) picks the checkpoint on the test split, as the StairIQA
        # code does; every output of such a run is stamped paper-parity.
        return self._loader("test" if self.protocol.paper_parity else "val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
