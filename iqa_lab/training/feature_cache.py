"""Train from cached features when a model's backbone has a frozen prefix.

A model declares the prefix with ``model.backbone.frozen_stages=k`` (``nn.backbones.Backbone``).
The ``FeatureCache`` callback (``callbacks.feature_cache``) then, once the data is set up:

1. computes the prefix's output for every image and view that the store lacks (``nn.feature_cache``
   keys: backbone, weights, stage, transform, image content, view): ``views`` augmented views per
   training image, each drawn with a seed of (image content, view), so the same image gets the same
   views in every run and split; the one deterministic view (or five crops) of evaluation images;
2. swaps the DataModule's datasets for ``CachedFeatureDataset``s, which return those features in
   the batch's ``image`` slot (each epoch picks one of an image's views, seeded by (seed, epoch,
   item) as pixel augmentation is), and sets the backbone to read them in place of pixels.

Training then reads features, not pixels: the trainable stages and the head run on them. The rows
sit in memory when all stores fit ``max_ram_mb``, else they are read from disk (memory map).

A model with several frozen backbones (QualityNet's two streams) gets one store per backbone; the
batch's ``image`` is then a mapping from each backbone's module name to its features, and each
backbone reads its own entry (``Backbone.prefix_key``). Every backbone sees the same view of an
image in a step.

A model that needs a reference image in its batches (``needs``) trains from pixels, the cache
left aside (logged). Not covered (refused by name): padded native-resolution
batches (``data.collate=pad``), concatenated (``data=mixed``) datasets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from iqa_lab.data.datamodule import IQADataset
from iqa_lab.errors import ConfigError
from iqa_lab.nn.backbones import Backbone
from iqa_lab.nn.feature_cache import (
    FeatureRows,
    FeatureStore,
    file_content_hash,
    item_key,
    weights_digest,
)

log = logging.getLogger(__name__)

LIBRARIES = ("torch", "timm", "albumentations", "opencv-python-headless", "pillow")


def _library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except Exception:  # a library may be installed under another distribution name
            versions[name] = "absent"
    return versions


def transform_fingerprint(transform) -> str:
    """Every op of an ``IQATransform`` / ``FiveCrop`` with its arguments (albumentations reprs)."""
    parts = [type(transform).__name__]
    for attr in ("pre", "geometric", "pixel", "to_tensor", "post"):
        if hasattr(transform, attr):
            parts.append(f"{attr}={getattr(transform, attr).transforms!r}")
    if hasattr(transform, "size"):
        parts.append(f"size={transform.size}")
    return "|".join(parts)


def frozen_backbones(model: torch.nn.Module) -> dict[str, Backbone]:
    """The model's backbones with a frozen prefix, by module name (empty when it has none)."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, Backbone) and module.frozen_stages
    }


def frozen_backbone(model: torch.nn.Module) -> Backbone | None:
    """The model's one backbone with a frozen prefix, None when it has none."""
    found = list(frozen_backbones(model).values())
    if len(found) > 1:
        raise ConfigError(
            f"{type(model).__name__} has {len(found)} backbones with frozen_stages; this step "
            f"handles one (use frozen_backbones)"
        )
    return found[0] if found else None


def set_key(backbone: Backbone, transform) -> dict:
    """What decides a store's rows apart from the image: the store's folder."""
    return {
        "backbone": backbone.name,
        "weights": weights_digest(backbone.prefix_modules()),
        "frozen_stages": backbone.frozen_stages,
        "pooling": backbone.pooling,
        "transform": transform_fingerprint(transform),
        "libraries": _library_versions(),
    }


def view_seed(content_hash: str, view: int) -> int:
    """The augmentation seed of one view of one image (the same in every run and split)."""
    return int(np.random.SeedSequence([int(content_hash[:15], 16), view]).generate_state(1)[0])


class _Views(Dataset):
    """The pixels of every view of the listed items of ``dataset`` (``(V, C, H, W)`` each)."""

    def __init__(self, dataset: IQADataset, items: Sequence[int], hashes, views: int, train: bool):
        self.dataset, self.items, self.hashes = dataset, list(items), hashes
        self.views, self.train = views, train

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, j: int) -> torch.Tensor:
        i = self.items[j]
        pixels = self.dataset._decode(i)["image"]
        out = []
        for view in range(self.views):
            if self.train and hasattr(self.dataset.transform, "set_random_seed"):
                self.dataset.transform.set_random_seed(view_seed(self.hashes[i], view))
            out.append(self.dataset.transform(image=pixels)["image"])
        return torch.stack(out)


class CachedFeatureDataset(Dataset):
    """An ``IQADataset``'s items with the prefix's features in place of the image: a tensor, or,
    given mappings of ``rows`` and ``features`` (several frozen backbones), a mapping of tensors
    with the same keys, all of one view."""

    def __init__(
        self,
        dataset: IQADataset,
        rows: np.ndarray | Mapping[str, np.ndarray],
        features: FeatureRows | Mapping[str, FeatureRows],
    ):
        self.rows, self.features = rows, features  # rows: (items, views) row numbers
        if isinstance(rows, Mapping):
            if set(rows) != set(features) or len({r.shape for r in rows.values()}) > 1:
                raise ValueError("rows and features need the same keys and (items, views) shapes")
        self.mos, self.index, self.db = dataset.mos, dataset.index, dataset.db
        self.histograms = dataset.histograms
        self.images = dataset.images
        self.needs: frozenset[str] = frozenset()
        self.augment_seed: int | None = None

    def set_augment_seed(self, seed: int | None) -> None:
        self.augment_seed = seed

    def _shape(self) -> tuple[int, int]:
        rows = self.rows
        return next(iter(rows.values())).shape if isinstance(rows, Mapping) else rows.shape

    def __len__(self) -> int:
        return self._shape()[0]

    def _view(self, i: int) -> int:
        views = self._shape()[1]
        if views == 1:
            return 0
        if self.augment_seed is None:
            return int(np.random.randint(views))
        return int(np.random.SeedSequence([self.augment_seed, i]).generate_state(1)[0] % views)

    def __getitem__(self, i: int) -> dict:
        view = self._view(i)
        if isinstance(self.rows, Mapping):
            features = {
                key: torch.from_numpy(self.features[key][rows[i, view]])
                for key, rows in self.rows.items()
            }
        else:
            features = torch.from_numpy(self.features[self.rows[i, view]])
        item = {"image": features, "mos": self.mos[i], "index": self.index[i]}
        if self.histograms is not None:
            item["histogram"] = self.histograms[i]
        if self.db is not None:
            item["db"] = self.db
        return item


def _boxes(dataset: IQADataset) -> list:
    if dataset.boxes is None:
        return [None] * len(dataset)
    return [box if np.isfinite(box).all() else None for box in dataset.boxes]


def fill_store(
    store: FeatureStore,
    backbone: Backbone,
    dataset: IQADataset,
    views: int,
    train: bool,
    batch_size: int,
    num_workers: int = 0,
) -> tuple[np.ndarray, int]:
    """Compute the rows ``store`` lacks for ``dataset``: (row numbers ``(items, views)``, number of
    images computed)."""
    hashes = [file_content_hash(dataset.data_dir / image) for image in dataset.images]
    boxes = _boxes(dataset)
    keys = [[item_key(h, v, box) for v in range(views)] for h, box in zip(hashes, boxes)]
    todo = [i for i, row in enumerate(keys) if store.missing(row)]
    if todo:
        loader = DataLoader(
            _Views(dataset, todo, hashes, views, train),
            batch_size=max(1, batch_size // views),
            num_workers=num_workers,
        )
        device = next(backbone.parameters()).device
        start, done, was_training = time.time(), 0, backbone.training
        backbone.eval()
        with torch.inference_mode():
            for pixels in loader:
                count = len(pixels)
                flat = pixels.flatten(0, 1)
                if flat.dim() == 5:  # five crops per view: one row holds them all
                    out = backbone.forward_prefix(flat.flatten(0, 1).to(device))
                    out = out.view(*flat.shape[:2], *out.shape[1:])
                else:
                    out = backbone.forward_prefix(flat.to(device))
                batch_keys = [k for i in todo[done : done + count] for k in keys[i]]
                new = [j for j, key in enumerate(batch_keys) if key not in store.index]
                store.add([batch_keys[j] for j in new], out.cpu().numpy()[new])
                done += count
                rate = done / max(time.time() - start, 1e-9)
                log.info(
                    "feature cache %s: %d/%d images (%.1f img/s, ETA %.0f s)",
                    dataset.split,
                    done,
                    len(todo),
                    rate,
                    (len(todo) - done) / rate,
                )
        backbone.train(was_training)
    rows = np.stack([store.rows(row) for row in keys]) if keys else np.empty((0, views), int)
    return rows, len(todo)


class FeatureCache(L.Callback):
    """Cache a frozen prefix's outputs and train from them (module docstring). Does nothing for a
    model without a frozen prefix."""

    def __init__(
        self,
        cache_dir: str,
        views: int = 4,
        dtype: str = "float16",
        max_ram_mb: float = 2048,
        batch_size: int = 32,
        enabled: bool = True,
    ):
        if views < 1:
            raise ConfigError(f"callbacks.feature_cache.views must be >= 1, got {views}")
        self.cache_dir = Path(cache_dir)
        self.views, self.dtype = int(views), dtype
        self.max_ram_bytes = float(max_ram_mb) * 2**20
        self.batch_size, self.enabled = int(batch_size), enabled
        self.computed: dict[str, int] = {}  # images computed per split (0: every row was a hit)
        self.streaming: bool | None = None
        self.wall_s: float | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        backbones = frozen_backbones(pl_module) if self.enabled else {}
        if not backbones or any(b.reads_prefix_features for b in backbones.values()):
            return
        if getattr(pl_module, "needs", None):
            # The store holds the image's features only; the reference goes through the prefix
            # as pixels (the unified FR/NR model trained jointly on a database with references).
            log.info(
                "feature cache: %s needs %s in its batches; it trains from pixels (the prefix "
                "runs in every step)",
                type(pl_module).__name__,
                sorted(pl_module.needs),
            )
            return
        datamodule = trainer.datamodule
        self._check(pl_module, datamodule)
        start = time.time()
        stores: dict[str, dict[str, FeatureStore]] = {}  # backbone -> split -> store
        rows: dict[str, dict[str, np.ndarray]] = {}  # split -> backbone -> row numbers
        device = trainer.strategy.root_device
        self.computed = {}
        for name, backbone in backbones.items():
            home = next(backbone.parameters()).device
            backbone.to(device)
            stores[name] = {}
            for split, dataset in datamodule.datasets.items():
                train = split == "train"
                views = self.views if train else 1
                key = set_key(backbone, dataset.transform)
                store = FeatureStore(self.cache_dir, key, self.dtype)
                # val and test share a transform, hence a store: one object, one index
                same = (s for s in stores[name].values() if s.folder == store.folder)
                stores[name][split] = store = next(same, store)
                rows.setdefault(split, {})[name], computed = fill_store(
                    store, backbone, dataset, views, train, self.batch_size, datamodule.num_workers
                )
                self.computed[split] = max(self.computed.get(split, 0), computed)
            backbone.to(home)
        folders = {s.folder: s for split_stores in stores.values() for s in split_stores.values()}
        total = sum(store.nbytes() for store in folders.values())
        self.streaming = total > self.max_ram_bytes
        readers = {
            folder: store.reader(in_memory=not self.streaming) for folder, store in folders.items()
        }
        single = next(iter(backbones)) if len(backbones) == 1 else None
        for split, dataset in list(datamodule.datasets.items()):
            features = {name: readers[stores[name][split].folder] for name in backbones}
            if single is None:
                cached = CachedFeatureDataset(dataset, rows[split], features)
            else:
                cached = CachedFeatureDataset(dataset, rows[split][single], features[single])
            datamodule.datasets[split] = cached
        for name, backbone in backbones.items():
            backbone.reads_prefix_features = True
            backbone.prefix_key = None if single is not None else name
        self.wall_s = time.time() - start
        log.info(
            "feature cache: %s images computed (%s), %.1f MiB of features %s, %.1f s (%s)",
            sum(self.computed.values()),
            ", ".join(f"{s} {n}" for s, n in self.computed.items()),
            total / 2**20,
            "read from disk (over max_ram_mb)" if self.streaming else "in memory",
            self.wall_s,
            ", ".join(backbones),
        )

    @staticmethod
    def _check(pl_module, datamodule) -> None:
        if getattr(datamodule.collate, "mode", None) == "pad":
            raise ConfigError(
                "data.collate=pad (native-resolution batches) and a frozen prefix: cached "
                "features need one input size; set data.transforms crop_size or resize"
            )
        for split, dataset in datamodule.datasets.items():
            if not isinstance(dataset, IQADataset):
                raise ConfigError(
                    f"the feature cache handles one database's datasets; '{split}' is a "
                    f"{type(dataset).__name__} (data=mixed): set model.backbone.frozen_stages=0"
                )
