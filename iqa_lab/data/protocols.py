"""Train / val / test splits under a named protocol (``conf/protocol/<name>.yaml``).

- ``official``: the database's own split (the record column ``set``: train / val / test). When the
  database publishes no validation set, validation is carved from the official training set.
- ``random``: contents drawn at random into train / test with a seed per repeat (StairIQA: 10
  repeats of 80/20, median reported). A content is a ``ref``: the image itself for in-the-wild
  databases, the reference photo for synthetic ones, the parent image for patch databases — so
  random splits never put two versions of one content on both sides.
- ``content``: the same draw, named for what synthetic databases require (all distortions of one
  reference on one side); it refuses a database whose references are all distinct only in name.
- ``cross``: train on the databases ``train_dbs``, test on ``test_dbs`` (``data=mixed``).
- ``leave_one_out``: train on every database but ``held_out``, test on it (StairIQA Table V).

Validation is always carved from the training side (``val_fraction`` of its contents), content-
separated. The split seed of repeat ``r`` is ``seed + r``. Each database is drawn on its own, by a
key per content hashed from the split seed, the database's name and the content id
(``_content_keys``): a database's split of repeat ``r`` is the same whether it is set up alone or
inside ``data=mixed`` with any others (StairIQA Table IV compares IMDT and single-database models
on the same test images), and dropping a few records moves only contents at the threshold.
``distorted_ratio`` (MLMS-IQA's "distorted image ratio", Tables 2–3; null = every record): after
the split, each split of each database keeps its pristine references (records whose image is its
own reference) and distorted images in that proportion, ``distorted / (distorted + pristine)``,
dropping the fewest records (``apply_distorted_ratio``). The paper varies it 50 / 60 / 70 % and
reports lower correlations at higher ratios; read as the share of distorted images among the
rated images (the pristine ones rated as such), that is what one expects: pristine images are the
easy, well-separated top of the scale. It needs a database that rates its references
(``data=synthetic`` with ``include_pristine``).
Databases cut from the same pictures (FLIVE and its patches) are one *content group* (the records'
optional ``content_db`` column): the group is drawn once, by its contents, so a picture and its
patches land on the same side. ``selection=val`` picks the checkpoint on
validation; ``selection=test`` reproduces papers that picked on the test set (the StairIQA code
does) and stamps ``paper-parity`` on every output.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from iqa_lab.errors import ConfigError

SPLITS = ("train", "val", "test")
PAPER_PARITY = "paper-parity"
# Optional record column: the database whose contents a record's ``ref`` names (default: ``db``).
CONTENT_DB = "content_db"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Protocol:
    name: str = "content"
    seed: int = 0
    repeat: int = 0
    repeats: int = 10
    train_fraction: float = 0.8
    val_fraction: float = 0.2
    selection: str = "val"
    train_dbs: tuple = field(default_factory=tuple)
    test_dbs: tuple = field(default_factory=tuple)
    held_out: str | None = None
    distorted_ratio: float | None = None

    def __post_init__(self):
        if self.distorted_ratio is not None and not 0 < self.distorted_ratio <= 1:
            raise ConfigError(
                f"protocol.distorted_ratio must be in (0, 1] (the share of distorted images in "
                f"each split; null = all records), got {self.distorted_ratio}"
            )
        if self.name not in PROTOCOLS:
            raise ConfigError(f"unknown protocol '{self.name}'; known: {sorted(PROTOCOLS)}")
        if not 0 < self.train_fraction < 1:
            raise ConfigError(
                f"protocol.train_fraction must be in (0, 1), got {self.train_fraction}"
            )
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"protocol.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.selection not in ("val", "test"):
            raise ConfigError(f"protocol.selection must be 'val' or 'test', got {self.selection}")
        if not 0 <= self.repeat:
            raise ConfigError(f"protocol.repeat must be >= 0, got {self.repeat}")
        object.__setattr__(self, "train_dbs", tuple(self.train_dbs or ()))
        object.__setattr__(self, "test_dbs", tuple(self.test_dbs or ()))
        if self.name == "cross" and not (self.train_dbs and self.test_dbs):
            raise ConfigError(
                "protocol=cross needs protocol.train_dbs and protocol.test_dbs "
                "(database names of data=mixed)"
            )
        if self.name == "cross" and set(self.train_dbs) & set(self.test_dbs):
            raise ConfigError(
                f"protocol=cross: {sorted(set(self.train_dbs) & set(self.test_dbs))} "
                f"is both a training and a test database"
            )
        if self.name == "leave_one_out" and not self.held_out:
            raise ConfigError("protocol=leave_one_out needs protocol.held_out (a database name)")

    @property
    def split_seed(self) -> int:
        return self.seed + self.repeat

    @property
    def paper_parity(self) -> bool:
        """True when the checkpoint is chosen on the test set (not an honest held-out number)."""
        return self.selection == "test"


def _content_keys(refs: np.ndarray, protocol: Protocol, group: str, purpose: str) -> np.ndarray:
    """A pseudo-random 64-bit key per content, a function of (split seed, database, ``purpose``,
    content id) only: never of the other contents or databases present."""
    salt = f"{protocol.split_seed}/{group}/{purpose}/".encode()
    return np.array(
        [
            int.from_bytes(
                hashlib.blake2b(salt + str(r).encode(), digest_size=8).digest(), "little"
            )
            for r in refs
        ],
        dtype=np.uint64,
    )


def content_groups(records: pd.DataFrame) -> pd.Series:
    """Each record's content group: ``content_db`` where given, else its database."""
    if CONTENT_DB in records:
        return records[CONTENT_DB].fillna(records["db"]).astype(str)
    return records["db"].astype(str)


def _draw(refs, fraction: float, protocol: Protocol, group: str, purpose: str) -> set:
    """About ``fraction`` of the distinct contents (at least one, never all when there are two):
    those with the smallest keys (``_content_keys``). A content's side depends on its key and the
    count only, so a database drawn alone or beside others, or with a few records dropped
    (``data.on_bad=skip``, a patch file missing), keeps all but the contents at the threshold."""
    unique = np.array(sorted(set(refs)), dtype=object)
    count = int(round(fraction * len(unique)))
    count = min(max(count, 1), len(unique) - 1) if len(unique) > 1 else len(unique)
    keys = _content_keys(unique, protocol, group, purpose)
    order = np.lexsort((unique.astype(str), keys))
    return set(unique[order[:count]])


def carve_validation(records: pd.DataFrame, split: pd.Series, protocol: Protocol) -> pd.Series:
    """Move ``val_fraction`` of the training side's contents (``ref`` groups) to ``val``, for
    each database (content group) on its own: each database's model is selected on its own
    validation split, and a database's carve-out does not depend on the others present."""
    split = split.copy()
    # With selection=test the test split plays validation: no training contents are held back.
    if protocol.val_fraction > 0 and not protocol.paper_parity:
        train = split == "train"
        groups = content_groups(records)
        for group in sorted(set(groups[train])):
            side = train & (groups == group)
            refs = records.loc[side, "ref"].to_numpy()
            val = _draw(refs, protocol.val_fraction, protocol, group, "val")
            split[side & records["ref"].isin(val)] = "val"
    return split


def _random_by_content(records: pd.DataFrame, protocol: Protocol) -> pd.Series:
    """``train_fraction`` of the contents to the training side, the rest to test; each database
    (content group) on its own, as StairIQA splits each of its databases 80/20."""
    parts = []
    for group, rows in records.groupby(content_groups(records), sort=True):
        train_side = _draw(rows["ref"].to_numpy(), protocol.train_fraction, protocol, group, "test")
        split = pd.Series(np.where(rows["ref"].isin(train_side), "train", "test"), index=rows.index)
        parts.append(carve_validation(rows, split, protocol))
    return pd.concat(parts).reindex(records.index)


def random_split(records: pd.DataFrame, protocol: Protocol) -> pd.Series:
    return _random_by_content(records, protocol)


def content_split(records: pd.DataFrame, protocol: Protocol) -> pd.Series:
    distinct = (content_groups(records) + "/" + records["ref"].astype(str)).nunique()
    if distinct == len(records) and len(records) > 1:
        raise ConfigError(
            f"protocol=content needs references shared by several images, but every "
            f"one of the {len(records)} records has its own ref; this database has "
            f"no references: use protocol=random or protocol=official"
        )
    return _random_by_content(records, protocol)


_OFFICIAL_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def official_split(records: pd.DataFrame, protocol: Protocol) -> pd.Series:
    sets = records["set"].fillna("").astype(str).str.strip().str.lower()
    if (sets == "").all():
        raise ConfigError(
            f"protocol=official: database '{records['db'].iloc[0]}' publishes no "
            f"official split (the records' `set` is empty); use protocol=random"
        )
    unknown = sorted(set(sets) - set(_OFFICIAL_NAMES))
    if unknown:
        raise ConfigError(
            f"protocol=official: unknown set label(s) {unknown}; expected train / val / test"
        )
    split = sets.map(_OFFICIAL_NAMES)
    if not (split == "val").any():
        split = carve_validation(records, split, protocol)
    return split


def _by_database(records: pd.DataFrame, protocol: Protocol, train_dbs, test_dbs) -> pd.Series:
    known = set(records["db"])
    missing = sorted((set(train_dbs) | set(test_dbs)) - known)
    if missing:
        raise ConfigError(
            f"protocol={protocol.name}: database(s) {missing} are not in the data; "
            f"data=mixed holds {sorted(known)}"
        )
    split = pd.Series("unused", index=records.index)
    split[records["db"].isin(train_dbs)] = "train"
    split[records["db"].isin(test_dbs)] = "test"
    _warn_shared_contents(records, split, protocol)
    return carve_validation(records, split, protocol)


def _warn_shared_contents(records: pd.DataFrame, split: pd.Series, protocol: Protocol) -> None:
    """Say so when a training database shares contents with a test database (FLIVE and its
    patches): the test pictures were trained on, as in the paper's Table V."""
    content = content_groups(records) + "/" + records["ref"].astype(str)
    shared = set(content[split == "train"]) & set(content[split == "test"])
    if shared:
        dbs = sorted(set(records.loc[content.isin(shared), "db"]))
        log.warning(
            "protocol=%s: %d contents are both trained on and tested (databases %s cut from "
            "the same pictures); the test numbers are optimistic",
            protocol.name,
            len(shared),
            dbs,
        )


def cross_split(records: pd.DataFrame, protocol: Protocol) -> pd.Series:
    return _by_database(records, protocol, protocol.train_dbs, protocol.test_dbs)


def leave_one_out_split(records: pd.DataFrame, protocol: Protocol) -> pd.Series:
    others = sorted(set(records["db"]) - {protocol.held_out})
    return _by_database(records, protocol, others, [protocol.held_out])


PROTOCOLS = {
    "official": official_split,
    "random": random_split,
    "content": content_split,
    "cross": cross_split,
    "leave_one_out": leave_one_out_split,
}


def pristine_records(records: pd.DataFrame) -> pd.Series:
    """Whether each record is a pristine reference: its image is its own ``reference``, or its
    distortion type is ``pristine`` (``data=synthetic``)."""
    pristine = pd.Series(False, index=records.index)
    if "reference" in records:
        pristine |= records["reference"].astype(str) == records["image"].astype(str)
    if "dist_type" in records:
        pristine |= records["dist_type"].astype(str) == "pristine"
    return pristine


def _keep_first(rows: pd.DataFrame, count: int, protocol: Protocol, group: str) -> pd.Index:
    """``count`` of ``rows``, those with the smallest keys of their image (seeded, stable)."""
    keys = _content_keys(rows["image"].to_numpy(), protocol, group, "distorted_ratio")
    order = np.lexsort((rows["image"].astype(str).to_numpy(), keys))
    return rows.index[order[:count]]


def apply_distorted_ratio(records: pd.DataFrame, protocol: Protocol) -> pd.DataFrame:
    """Each (split, database) keeps distorted and pristine records in the proportion
    ``protocol.distorted_ratio`` (module docstring), dropping as few as possible."""
    ratio = protocol.distorted_ratio
    if ratio is None:
        return records
    pristine = pristine_records(records)
    if not pristine.any() and ratio < 1:
        raise ConfigError(
            f"protocol.distorted_ratio={ratio} needs rated pristine references among the "
            f"records (an image that is its own reference), and '{records['db'].iloc[0]}' has "
            f"none; use data=synthetic (include_pristine: true) or distorted_ratio=null"
        )
    keep = []
    for (split, group), rows in records.groupby(["split", content_groups(records)], sort=True):
        clean, distorted = rows[pristine[rows.index]], rows[~pristine[rows.index]]
        n_clean, n_dist = len(clean), len(distorted)
        if ratio == 1:
            n_clean = 0
        elif n_dist > ratio * (n_clean + n_dist):
            n_dist = int(round(n_clean * ratio / (1 - ratio)))
        else:
            n_clean = int(round(n_dist * (1 - ratio) / ratio))
        keep += [
            _keep_first(clean, n_clean, protocol, f"{group}/{split}/pristine"),
            _keep_first(distorted, n_dist, protocol, f"{group}/{split}/distorted"),
        ]
    kept = records.loc[records.index.isin(pd.Index([]).append(keep))]
    log.info(
        "protocol.distorted_ratio=%s: %d of %d records kept (%d pristine)",
        ratio,
        len(kept),
        len(records),
        int(pristine[kept.index].sum()),
    )
    return kept


def assign_splits(records: pd.DataFrame, protocol: Protocol) -> pd.DataFrame:
    """Records with a ``split`` column (``train`` / ``val`` / ``test``); records a protocol does
    not use (``cross`` with databases on neither side) are dropped."""
    out = records.copy()
    out["split"] = PROTOCOLS[protocol.name](records, protocol)
    out = apply_distorted_ratio(out[out["split"].isin(SPLITS)], protocol)
    val_expected = protocol.val_fraction > 0 and not protocol.paper_parity
    empty = [s for s in SPLITS if not (out["split"] == s).any() and (s != "val" or val_expected)]
    if empty:
        raise ConfigError(
            f"protocol '{protocol.name}' left split(s) {empty} empty on {len(out)} "
            f"records with {out['ref'].nunique()} references; use more data or "
            f"change protocol.train_fraction / val_fraction"
        )
    return out
