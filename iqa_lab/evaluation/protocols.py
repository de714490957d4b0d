"""Train / val / test splits under a named protocol.

- ``random``: images drawn at random (seed per repeat), for databases without shared references.
- ``content``: whole references / contents drawn at random, so every distortion of one reference
  sits on one side (required for synthetic databases).

Validation is always carved from the training side, content-separated whenever the records share
references. The split seed of repeat ``r`` is ``protocol.seed + r``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Protocol:
    name: str = "content"
    seed: int = 0
    repeat: int = 0
    train_fraction: float = 0.8
    val_fraction: float = 0.2
    selection: str = "val"

    def __post_init__(self):
        if self.name not in PROTOCOLS:
            raise ValueError(f"unknown protocol '{self.name}'; known: {sorted(PROTOCOLS)}")
        if not 0 < self.train_fraction < 1:
            raise ValueError(f"protocol.train_fraction must be in (0, 1), got {self.train_fraction}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"protocol.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.selection not in ("val", "test"):
            raise ValueError(f"protocol.selection must be 'val' or 'test', got {self.selection}")

    @property
    def split_seed(self) -> int:
        return self.seed + self.repeat


def _draw(groups: np.ndarray, fraction: float, rng: np.random.Generator) -> set:
    """About ``fraction`` of the distinct groups (at least one, never all when there are two)."""
    unique = np.array(sorted(set(groups)))
    count = int(round(fraction * len(unique)))
    count = min(max(count, 1), len(unique) - 1) if len(unique) > 1 else len(unique)
    return set(rng.permutation(unique)[:count])


def _split_by(records: pd.DataFrame, key: str, protocol: Protocol, val_key: str) -> pd.Series:
    rng = np.random.default_rng(protocol.split_seed)
    train_side = _draw(records[key].to_numpy(), protocol.train_fraction, rng)
    split = pd.Series(np.where(records[key].isin(train_side), "train", "test"), index=records.index)
    if protocol.val_fraction > 0:
        train_rows = records[split == "train"]
        val = _draw(train_rows[val_key].to_numpy(), protocol.val_fraction, rng)
        split[(split == "train") & records[val_key].isin(val)] = "val"
    return split


def random_split(records: pd.DataFrame, protocol: Protocol) -> pd.Series:
    # Validation still keeps references together when the database has shared references.
    return _split_by(records, "image", protocol, val_key="ref")


def content_split(records: pd.DataFrame, protocol: Protocol) -> pd.Series:
    return _split_by(records, "ref", protocol, val_key="ref")


PROTOCOLS = {"random": random_split, "content": content_split}


def assign_splits(records: pd.DataFrame, protocol: Protocol) -> pd.DataFrame:
    """Records with a ``split`` column (``train`` / ``val`` / ``test``)."""
    out = records.copy()
    out["split"] = PROTOCOLS[protocol.name](records, protocol)
    empty = [s for s in SPLITS if not (out["split"] == s).any()
             and not (s == "val" and protocol.val_fraction == 0)]
    if empty:
        raise ValueError(f"protocol '{protocol.name}' left split(s) {empty} empty on {len(out)} "
                         f"records with {out['ref'].nunique()} references; use more data or "
                         f"change protocol.train_fraction / val_fraction")
    return out
