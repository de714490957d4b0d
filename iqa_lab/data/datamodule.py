"""IQADataModule: records (from a database parser) + protocol → datasets → loaders.

A database is a subclass that implements ``load_records()`` (its parser); everything else — splits,
transforms, loaders — is shared here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from iqa_lab.data.images import load_rgb
from iqa_lab.data.records import validate_records
from iqa_lab.data.transforms import build_transform
from iqa_lab.evaluation.leakage import check_leakage
from iqa_lab.evaluation.protocols import Protocol, assign_splits


class IQADataset(Dataset):
    """Decodes one image per item, lazily; returns the image tensor, its MOS and its row index."""

    def __init__(self, records: pd.DataFrame, data_dir: str | Path, transform):
        self.images = records["image"].tolist()
        self.mos = torch.tensor(records["mos"].to_numpy(), dtype=torch.float32)
        self.index = torch.tensor(records.index.to_numpy(), dtype=torch.long)
        self.data_dir = Path(data_dir)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        image = load_rgb(self.data_dir / self.images[i])
        return {"image": self.transform(image=image)["image"], "mos": self.mos[i],
                "index": self.index[i]}


class IQADataModule(L.LightningDataModule):
    """Base DataModule. ``records`` after ``setup`` holds every record with its ``split``."""

    def __init__(self, name: str, data_dir: str, protocol: Mapping, transforms: Mapping,
                 batch_size: int = 16, eval_batch_size: int | None = None, num_workers: int = 0,
                 pin_memory: bool = False, mos_range: tuple = (0.0, 1.0), lower_better: bool = False):
        super().__init__()
        self.name = name
        self.data_dir = Path(data_dir).expanduser()
        self.protocol = Protocol(**protocol)
        self.transform_cfg = {stage: dict(cfg) for stage, cfg in transforms.items()}
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.mos_range = tuple(mos_range)
        self.lower_better = lower_better
        self.records: pd.DataFrame | None = None
        # Items the bad-input policy dropped: {"image", "reason"} dicts, written to results.json.
        self.bad_inputs: list[dict] = []
        # Where the leakage guard caches pixel hashes (the runs set paths.cache_dir); None: no cache.
        self.hash_cache_dir: str | None = None
        self.datasets: dict[str, IQADataset] = {}

    def load_records(self) -> pd.DataFrame:
        """Parse the database's files into the record schema (``data.records``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_records()")

    def setup(self, stage: str | None = None) -> None:
        if self.records is not None:
            return
        records = validate_records(self.load_records().reset_index(drop=True))
        records = self.screen_inputs(records)
        self.records = assign_splits(records, self.protocol)
        self.check_splits(self.records)
        self.build_datasets()

    def screen_inputs(self, records: pd.DataFrame) -> pd.DataFrame:
        """Resolve image files and apply the bad-input policy; bad items go to ``bad_inputs``."""
        return records

    def check_splits(self, records: pd.DataFrame) -> None:
        """Refuse splits that leak files, identical images or references across train / val /
        test (``evaluation.leakage``); pixel hashes are cached in ``hash_cache_dir`` if set."""
        check_leakage(records, self.image_paths(records), cache_dir=self.hash_cache_dir,
                      where=f"'{self.name}' under protocol={self.protocol.name}")

    def image_paths(self, records: pd.DataFrame) -> pd.Series:
        """The file of each record."""
        return records["image"].map(lambda image: self.data_dir / image)

    def build_datasets(self) -> None:
        for split in ("train", "val", "test"):
            rows = self.records[self.records["split"] == split]
            cfg = self.transform_cfg["train" if split == "train" else "eval"]
            self.datasets[split] = IQADataset(rows, self.data_dir, build_transform(split, **cfg))

    @property
    def synthetic_labels(self) -> bool:
        """True when the labels are generated, not human opinion scores (said wherever shown)."""
        return False

    def split_sizes(self) -> dict[str, int]:
        return {split: len(ds) for split, ds in self.datasets.items()}

    def _per_device(self, batch_size: int) -> int:
        world = self.trainer.world_size if self.trainer is not None else 1
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} is not divisible by {world} devices")
        return batch_size // world

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        size = self.batch_size if split == "train" else self.eval_batch_size
        return DataLoader(self.datasets[split], batch_size=self._per_device(size), shuffle=shuffle,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        # selection=test (paper parity) picks the checkpoint on the test split, as the StairIQA
        # code does; every output of such a run is stamped paper-parity.
        return self._loader("test" if self.protocol.paper_parity else "val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
