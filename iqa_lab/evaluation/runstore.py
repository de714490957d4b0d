"""Finished runs, found again by what they computed: repeats and tables are resumable.

A run's *key* is a hash of the resolved parts of its config that decide its numbers (data, model,
protocol, trainer, seed, evaluation, checkpoint selection), leaving out where things are written
and how they are shown (paths, loggers, progress bars, Hydra). Its *group* is the same hash
without ``protocol.repeat``: the repeats of one experiment share a group, which is what the
aggregator summarises. A finished run leaves ``<store>/<key>.json`` (its results and output
folder); a run whose key is there is not run again unless ``reuse_finished=false``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from iqa_lab.files import atomic_write_text, is_temporary

KEY_PARTS = (
    "data",
    "model",
    "protocol",
    "trainer",
    "seed",
    "evaluation",
    "train",
    "test",
    "ckpt_path",
)
CALLBACKS_THAT_DECIDE = ("model_checkpoint", "early_stopping")
# Keys that only say where files go or how much is printed.
IGNORED_KEYS = {
    "default_root_dir",
    "cache_dir",
    "dirpath",
    "save_dir",
    "num_workers",
    "pin_memory",
    "enable_progress_bar",
    "enable_model_summary",
    "log_every_n_steps",
    "filename",
    "verbose",
    "auto_insert_metric_name",
    "save_last",
    "save_top_k",
}


def _strip(node):
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in sorted(node.items()) if k not in IGNORED_KEYS}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def identity(cfg: DictConfig, with_repeat: bool = True) -> dict:
    """The resolved config parts that decide a run's numbers."""
    ident = {}
    for part in KEY_PARTS:
        if part in cfg:
            value = cfg[part]
            ident[part] = (
                OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
            )
    callbacks = cfg.get("callbacks") or {}
    ident["callbacks"] = {
        name: OmegaConf.to_container(callbacks[name], resolve=True)
        for name in CALLBACKS_THAT_DECIDE
        if callbacks.get(name) is not None
    }
    ident = _strip(ident)
    return ident if with_repeat else _drop_repeat(ident)


def _drop_repeat(node):
    """Remove ``repeat`` from every protocol node (data configs carry a copy of the protocol)."""
    if isinstance(node, dict):
        return {
            k: (
                {kk: vv for kk, vv in v.items() if kk != "repeat"}
                if k == "protocol" and isinstance(v, dict)
                else _drop_repeat(v)
            )
            for k, v in node.items()
        }
    return node


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_key(cfg: DictConfig) -> str:
    return _digest(identity(cfg))


def group_key(cfg: DictConfig) -> str:
    return _digest(identity(cfg, with_repeat=False))


def store_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.log_dir) / "store"


def find_finished(cfg: DictConfig) -> dict | None:
    """The stored entry of a finished run with this config, or None."""
    path = store_dir(cfg) / f"{run_key(cfg)}.json"
    if not path.is_file():
        return None
    entry = json.loads(path.read_text())
    results = Path(entry.get("output_dir", "")) / "results.json"
    return entry if results.is_file() else None


def record_finished(cfg: DictConfig, output_dir: str | Path, results: dict) -> Path:
    """Remember a finished run (atomically): key, group, output folder and its results."""
    folder = store_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_key(cfg)}.json"
    entry = {
        "key": run_key(cfg),
        "group": group_key(cfg),
        "output_dir": str(Path(output_dir).resolve()),
        "repeat": results.get("split", {}).get("repeat"),
        "results": results,
    }
    return atomic_write_text(path, json.dumps(entry, indent=1, default=str))


def entries(store: str | Path, group: str | None = None) -> list[dict]:
    """Every stored run (of one group)."""
    found = []
    for path in sorted(Path(store).glob("*.json")):
        if is_temporary(path):
            continue
        entry = json.loads(path.read_text())
        if group is None or entry.get("group") == group:
            found.append(entry)
    return found
