"""``data=mixed``: several databases as one DataModule, for cross-database protocols (``cross``,
``leave_one_out``) and mixed-database training.

Each member is a full database DataModule (its own parser, folder, MOS scale and transforms). Their
records are concatenated with ``db`` set to the member's name and ``content_db`` to its content
group, which namespaces its ``ref`` (two databases' ``I01`` are different photos): the member's
name, or the database whose pictures it is cut from where its records say so (FLIVE patches share
the FLIVE pictures' content ids). ``ref`` stays as the member gives it, so the protocol splits
each database (content group) on its own with the very draw of that database set up alone. Images
keep paths relative to their own database's folder, and each split is a concatenation of
per-database datasets so every database keeps its own crop policy. Every item carries its
database's name (``db``), which picks its regressor head in a multi-head model.

With ``imdt`` set (``loops``, ``epochs_upper``, ``epochs_rule``), training follows iterative
mixed-database training (``training.imdt``): each epoch trains and validates one database, in the
order of ``databases``, as the schedule says. Without it, every epoch pools all training databases.

One bad-input setting: ``data.on_bad`` (and ``data.duplicate_labels``) of the mixed module
governs every member (screening, decoding, classical scoring); a member's own is overridden, with a
warning if it differs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pandas as pd
from torch.utils.data import ConcatDataset

from iqa_lab.data.datamodule import IQADataModule, IQADataset
from iqa_lab.data.imdt_schedule import IMDTSchedule
from iqa_lab.data.protocols import CONTENT_DB, content_groups
from iqa_lab.data.records import check_schema
from iqa_lab.errors import ConfigError

log = logging.getLogger(__name__)


class MixedDataModule(IQADataModule):
    def __init__(
        self, databases: Mapping[str, IQADataModule], imdt: Mapping | None = None, **kwargs
    ):
        if not databases:
            raise ConfigError(
                "data=mixed needs data.databases: name → database config "
                "(e.g. an experiment with `- /data@data.databases.koniq10k: koniq10k`)"
            )
        kwargs.setdefault("transforms", {})
        super().__init__(**kwargs)
        self.databases: dict[str, IQADataModule] = dict(databases)
        for name, member in self.databases.items():
            if member.name != name:
                raise ConfigError(
                    f"data.databases.{name} is named '{member.name}'; set its "
                    f"`name: {name}` so records and heads agree"
                )
            if member.on_bad != self.on_bad:
                log.warning(
                    "data.databases.%s.on_bad=%s is overridden by data.on_bad=%s: one "
                    "setting governs every database of data=mixed",
                    name,
                    member.on_bad,
                    self.on_bad,
                )
            member.bad = self.bad
            if member.duplicate_labels != self.duplicate_labels:
                log.warning(
                    "data.databases.%s.duplicate_labels=%s is overridden by "
                    "data.duplicate_labels=%s: one setting governs every database of data=mixed",
                    name,
                    member.duplicate_labels,
                    self.duplicate_labels,
                )
            member.duplicate_labels = self.duplicate_labels
            member.train_views_per_epoch = self.train_views_per_epoch
        self.imdt = dict(imdt) if imdt else None
        self.schedule: IMDTSchedule | None = None
        # split -> database -> its dataset
        self.db_datasets: dict[str, dict[str, IQADataset]] = {}

    def prepare_data(self) -> None:
        for member in self.databases.values():
            member.prepare_data()

    def load_records(self) -> pd.DataFrame:
        frames = []
        for name, member in self.databases.items():
            records = member.screen_inputs(
                check_schema(member.load_records().reset_index(drop=True))
            )
            records = records.assign(db=name)
            # The member's notes (case-resolved, listed again…) go to results.json with the run's.
            self.input_notes.extend({**note, "db": name} for note in member.input_notes)
            frames.append(records.assign(**{CONTENT_DB: content_groups(records)}))
        return pd.concat(frames, ignore_index=True)

    def screen_inputs(self, records: pd.DataFrame) -> pd.DataFrame:
        """Each member screened its own records in ``load_records`` (its ``on_bad``, its folder):
        probing every file a second time here would only double the setup cost."""
        return records

    def image_paths(self, records: pd.DataFrame) -> pd.Series:
        return pd.Series(
            [
                self.databases[db].data_dir / image
                for db, image in zip(records["db"], records["image"])
            ],
            index=records.index,
        )

    def reference_paths(self, records: pd.DataFrame) -> pd.Series:
        """Each record's reference under its own database's folder (each member refuses, by its
        name, records without one)."""
        parts = [self.databases[db].reference_paths(rows) for db, rows in records.groupby("db")]
        return pd.concat(parts).reindex(records.index)

    def build_datasets(self) -> None:
        for split in ("train", "val", "test"):
            parts = {}
            for name, member in self.databases.items():
                rows = self.records[(self.records["split"] == split) & (self.records["db"] == name)]
                if len(rows):  # the member shares this module's bad-input policy (__init__)
                    parts[name] = member.make_dataset(rows, split, db=name)
            self.db_datasets[split] = parts
            # An empty split (no validation under selection=test) is an empty dataset, as for a
            # single database: provide() and the loaders treat every split alike.
            self.datasets[split] = (
                ConcatDataset(list(parts.values()))
                if parts
                else IQADataset(self.records.iloc[:0], self.data_dir, transform=None, split=split)
            )
        if self.imdt is not None:
            self.schedule = IMDTSchedule(self.training_sizes(), **self.imdt)

    @property
    def training_databases(self) -> list[str]:
        """Databases with training images, in the order of ``databases``."""
        return list(self.db_datasets.get("train", {}))

    def training_sizes(self) -> dict[str, int]:
        return {name: len(ds) for name, ds in self.db_datasets["train"].items()}

    def _active(self, split: str) -> IQADataset:
        step = self.schedule.at(self.trainer.current_epoch if self.trainer is not None else 0)
        dataset = self.db_datasets[split].get(step.database)
        if dataset is None:
            raise ConfigError(
                f"IMDT: '{step.database}' has no {split} images under "
                f"protocol={self.protocol.name}; each database needs its own "
                f"validation split (protocol.val_fraction > 0)"
            )
        return dataset

    def train_dataloader(self):
        if self.schedule is None:
            return super().train_dataloader()
        return self._loader("train", shuffle=True, dataset=self._active("train"))

    def val_dataloader(self):
        if self.schedule is None:
            return super().val_dataloader()
        split = "test" if self.protocol.paper_parity else "val"
        return self._loader(split, shuffle=False, dataset=self._active(split))

    def test_dataloader(self, databases: list[str] | None = None):
        """The test split, or only the test images of ``databases``."""
        if databases is None:
            return super().test_dataloader()
        parts = [self.db_datasets["test"][db] for db in databases if db in self.db_datasets["test"]]
        return self._loader("test", shuffle=False, dataset=ConcatDataset(parts))

    def normalised_std(self, records: pd.DataFrame) -> pd.Series:
        parts = [self.databases[db].normalised_std(rows) for db, rows in records.groupby("db")]
        return pd.concat(parts).reindex(records.index) if parts else records["mos_std"]

    @property
    def synthetic_labels(self) -> bool:
        return any(m.synthetic_labels for m in self.databases.values())

    @property
    def mos_ranges(self) -> dict[str, list]:
        return {name: list(m.mos_range) for name, m in self.databases.items()}
