"""IQADataModule: records (from a database parser) + protocol → datasets → loaders.

The records and files side (parser, screening, near-duplicate pass, paths) is
``iqa_lab.data.database.IQADatabase``, which imports no torch: ``iqa-check`` uses it alone. This
module adds the splits, datasets and loaders.

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
   finite number, an image listed twice: ``records.label_problems``; under
   ``data.duplicate_labels=first`` only its first row is kept, the later ones dropped with a note in
   ``input_notes``), the file's existence (with a
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

Files with identical decoded pixels but different MOS (one photo listed under two names with two
scores) are label problems too, found before the split from the leakage guard's pixel hashes
(``drop_conflicting_duplicates``, ``records.conflicting_duplicates``): refused under ``raise``,
every copy dropped under ``skip``. Identical files with one MOS stay the leakage guard's business.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from iqa_lab.data.bad_inputs import BadInputError, BadInputs, bad_inputs_message  # noqa: F401
from iqa_lab.data.collate import IQACollate
from iqa_lab.data.database import (  # noqa: F401  (re-exported: the DataModule's names)
    WITH_REFERENCES,
    IQADatabase,
    resolve_parser,
    with_box_ids,
)
from iqa_lab.data.images import BadImageError, load_rgb
from iqa_lab.data.leakage import check_leakage
from iqa_lab.data.near_duplicates import join_near_duplicates, straddling_pairs
from iqa_lab.data.protocols import assign_splits
from iqa_lab.data.records import (
    BOX_COLUMNS,
    check_schema,
    histogram_columns,
    validate_records,
)
from iqa_lab.data.transforms import build_transform
from iqa_lab.errors import ConfigError

log = logging.getLogger(__name__)

# What a model may declare it needs from a batch beyond the image (``IQAModule.needs``).
NEEDS = ("reference",)


def loader_seed(seed: int) -> int:
    """The seed of a loader's own generator (worker base seeds), apart from its sampler's."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])


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
        views_per_epoch: int = 1,
    ):
        if int(views_per_epoch) < 1:
            raise ConfigError(
                f"data.train_views_per_epoch={views_per_epoch}: give 1 or more (how many random "
                f"crops of each training image, and its reference, an epoch sees)"
            )
        # Item j is record j % N: each record's views are distinct items, each with its own
        # augmentation draw (crop box, flips) shared by the image and its reference.
        self.views_per_epoch = int(views_per_epoch)
        self.images = records["image"].tolist()
        self.references = records["reference"].tolist() if "reference" in records else None
        self.mos = torch.tensor(records["mos"].to_numpy(), dtype=torch.float32)
        # Rating histograms (``records.histogram_columns``), passed on as ``histogram``.
        hist = histogram_columns(records)
        self.histograms = (
            torch.tensor(records[hist].to_numpy(dtype=float), dtype=torch.float32) if hist else None
        )
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
        return len(self.images) * self.views_per_epoch

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

    def __getitem__(self, item: int) -> dict:
        i = item % len(self.images)
        try:
            pixels = self._decode(i)
        except BadImageError as err:
            fields = {} if self.db is None else {"db": self.db}
            if hasattr(err, "path"):  # the file that failed to decode (not a box or shape)
                fields["path"] = err.path
            return {"bad": self.bad_inputs.decode_failed(self.images[i], err, self.split, **fields)}
        self._seed_transform(item)
        out = {**self.transform(**pixels), "mos": self.mos[i], "index": self.index[i]}
        if self.histograms is not None:
            out["histogram"] = self.histograms[i]
        if self.db is not None:
            out["db"] = self.db
        return out


class IQADataModule(IQADatabase, L.LightningDataModule):
    """The DataModule of every database: its records and files (``IQADatabase``), split by the
    protocol into datasets and loaders. ``records`` after ``setup`` holds every record with its
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
        collate: str = "stack",
        train_views_per_epoch: int = 1,
        **database_keys,
    ):
        super().__init__(
            name=name, data_dir=data_dir, parser=parser, protocol=protocol, **database_keys
        )
        self.transform_cfg = {stage: dict(cfg) for stage, cfg in transforms.items()}
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.collate = IQACollate(collate)
        self.train_views_per_epoch = train_views_per_epoch
        self.datasets: dict[str, IQADataset] = {}

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
        records = self.drop_conflicting_duplicates(records)
        pairs = self.find_near_duplicates(records)
        records = join_near_duplicates(records, pairs, self.protocol.name == "official")
        self.records = assign_splits(records, self.protocol)
        self.near_duplicates = self.near_duplicate_report(self.records, pairs)
        self.check_splits(self.records)
        self.build_datasets()

    def screen_inputs(self, records: pd.DataFrame) -> pd.DataFrame:
        """Check labels and files cheaply and apply ``on_bad`` (module docstring): the records to
        keep, with ``image`` pointing at the file actually found; bad items go to ``bad_inputs``."""
        total = len(records)
        records, later = self.keep_first_listings(records)
        bad, notes, resolved = self.find_bad_inputs(records)
        self.bad.refuse([{**item, "db": self.name} for item in bad], total, self.name)
        notes = later + notes
        for note in notes:
            log.warning("%s: %s", note["image"], note["note"])
        records = records.drop(index=[item["index"] for item in bad])
        kept = resolved.index.intersection(records.index)
        records.loc[kept, "image"] = resolved[kept]
        self.input_notes.extend(notes)
        return self._usable(records, bad)

    def check_splits(self, records: pd.DataFrame) -> None:
        """Refuse splits that leak files, identical images or references across train / val /
        test (``data.leakage``); pixel hashes are cached in ``hash_cache_dir`` if set."""
        check_leakage(
            records,
            self.image_paths(records),
            where=f"'{self.name}' under protocol={self.protocol.name}",
            cache=self.pixel_hashes,
        )

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
            views_per_epoch=self.train_views_per_epoch if split == "train" else 1,
        )

    def split_sizes(self) -> dict[str, int]:
        """Records per split (not items: a training record is ``train_views_per_epoch`` items)."""
        return {
            split: sum(len(part.images) for part in getattr(ds, "datasets", [ds]))
            for split, ds in self.datasets.items()
        }

    def _per_device(self, batch_size: int) -> int:
        world = self.trainer.world_size if self.trainer is not None else 1
        if batch_size % world:
            raise ConfigError(
                f"data.batch_size / data.eval_batch_size {batch_size} is not divisible by the "
                f"{world} devices (trainer.devices); make it a multiple"
            )
        return batch_size // world

    def _epoch_seed(self, epoch: int | None = None) -> int:
        """The run's seed (``seed_everything``) combined with ``epoch`` (default: the current
        one)."""
        if epoch is None:
            epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return int(os.environ.get("PL_GLOBAL_SEED", 0)) + epoch

    def _loader(self, split: str, shuffle: bool, dataset=None) -> DataLoader:
        """A loader of ``split`` (or of ``dataset``). Training loaders are made anew each epoch
        (``trainer.reload_dataloaders_every_n_epochs: 1``): the order is the permutation
        ``DistributedSampler`` draws for (seed, epoch), so one process and DDP see the same global
        batches, and each item's augmentation is seeded by (seed, epoch, item). A run resumed
        from an epoch's checkpoint therefore continues exactly as the uninterrupted one.

        Every loader has its own seeded generator: starting to iterate it draws the workers' base
        seed from there, not from torch's global random state, which dropout uses and which
        Lightning's hooks meet in another order on a resumed run."""
        dataset = self.datasets[split] if dataset is None else dataset
        size = self.batch_size if split == "train" else self.eval_batch_size
        reloading = bool(
            self.trainer is not None and self.trainer.reload_dataloaders_every_n_epochs
        )
        seed = self._epoch_seed() if shuffle else self._epoch_seed(epoch=0)
        sampler = None
        if shuffle:
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
            generator=torch.Generator().manual_seed(loader_seed(seed)),
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
