"""What a table cell ran, in words a table can print: its resolved protocol, how its checkpoint
was selected, and paths named relative to ``paths.data_root`` (committed tables never carry the
absolute paths of the machine that ran them). Nothing in this module imports from iqa_lab."""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig

DATA_ROOT = "<data_root>"


def _share(fraction) -> str:
    return f"{float(fraction):.0%}"


def describe_protocol(protocol: DictConfig | dict) -> str:
    """The protocol's name and the keys that decide its split, e.g. ``random: train 80% / test
    20%, val 20% of train`` or ``leave_one_out: held out tid2013``."""
    name = protocol.get("name")
    if protocol.get("selection") == "test":
        val = "no val (test plays validation)"
    else:
        val = f"val {_share(protocol.get('val_fraction', 0))} of train"
    if name == "cross":
        train, test = list(protocol.get("train_dbs") or []), list(protocol.get("test_dbs") or [])
        split = f"train {train} → test {test}"
    elif name == "leave_one_out":
        split = f"held out {protocol.get('held_out')}"
    elif name == "official":
        split = "the database's official sets"
        val = val.replace("of train", "of train where none is published")
    else:
        train = float(protocol.get("train_fraction", 0))
        split = f"train {_share(train)} / test {_share(1 - train)}"
    return f"{name}: {split}, {val}"


def describe_selection(cfg: DictConfig, entry: str = "train") -> str:
    """How the tested weights were chosen: the monitored metric and the split it was read on
    (``selection=test``: the test split, paper-parity), per database under IMDT, the last epoch
    without a checkpoint callback, or none for a run that does not train."""
    if entry != "train" or not cfg.get("train", True):
        if cfg.get("ckpt_path"):
            return f"given checkpoint {Path(str(cfg.ckpt_path)).name}"
        return "none (no training)"
    on = "test split (paper-parity)" if cfg.protocol.get("selection") == "test" else "val split"
    callbacks = cfg.get("callbacks") or {}
    per_database = callbacks.get("per_database")
    if per_database is not None and per_database.get("monitor"):
        return f"{per_database.mode} {per_database.monitor} on the {on}, per database"
    checkpoint = callbacks.get("model_checkpoint")
    if checkpoint is not None and checkpoint.get("monitor"):
        return f"{checkpoint.mode} {checkpoint.monitor} on the {on}"
    return "last epoch (no checkpoint callback)"


def relative_to_data_root(text: str, data_root: str | Path | None) -> str:
    """``text`` with ``data_root`` (as given and resolved) written ``<data_root>`` wherever it
    stands as a whole path or a path's leading folders."""
    if not data_root:
        return text
    roots = {str(Path(data_root)), str(Path(data_root).resolve())} - {"/", "."}
    for root in sorted(roots, key=len, reverse=True):
        text = re.sub(re.escape(root) + r"(?![^/\\\s'\",:;)\]}])", DATA_ROOT, text)
    return text
