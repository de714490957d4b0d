"""``model=classical``: classical IQA measures as models of the evaluation entry point.

``ClassicalIQA(metric).predict(datamodule)`` scores the test split of a set-up DataModule (same
protocol, splits and seeds as the deep models) and returns the test records with a ``prediction``
column, higher = better, plus extra numbers for results.json. Images are scored at their native
resolution, as decoded by ``iqa_lab.data.images.load_rgb``; the DataModule's transforms (crops for
the networks) are not applied. Every metric of ``iqa_lab.classical.names()`` is computed by
``iqa_lab.classical.score``'s functions; two more are fitted here: ``brisque_svr`` (an SVR on
the original BRISQUE features of the training split) and ``niqe`` (NIQE's features against our
pristine fit). BRISQUE features and NIQE scores are cached per image file.

Full-reference metrics need each record's reference image (the DataModule's
``reference_paths``: the ``reference`` record column). Files that fail to decode follow the
DataModule's bad-input policy (``data.on_bad``), as the loaders do.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import pandas as pd

from iqa_lab.classical import brisque, niqe
from iqa_lab.classical.cache import FeatureCache
from iqa_lab.classical.metrics import METRICS as SCORED
from iqa_lab.classical.metrics import metric as classical_metric
from iqa_lab.data.images import BadImageError, load_rgb
from iqa_lab.errors import ConfigError
from iqa_lab.files import atomic_path, read_cache
from iqa_lab.progress import track

log = logging.getLogger("iqa_lab")

FITTED = ("brisque_svr", "niqe")
METRICS = tuple(SCORED) + FITTED


class ClassicalIQA:
    """A classical measure (``metric``, see ``conf/model/classical.yaml``) as an evaluable model."""

    def __init__(
        self,
        metric: str,
        cache_dir: str | None = None,
        brisque_svr: Mapping | None = None,
        niqe: Mapping | None = None,
        workers: int = 1,
    ):
        if metric not in METRICS:
            raise ConfigError(f"model.metric must be one of {list(METRICS)}, got '{metric}'")
        self.metric = metric
        self.full_reference = metric in SCORED and SCORED[metric].full_reference
        self.cache_dir = cache_dir
        self.svr_options = dict(brisque_svr or {})
        self.niqe_options = dict(niqe or {})
        self.workers = int(workers)
        self.extra: dict[str, float] = {}
        self._niqe_fitted: tuple[dict, int, str] | None = None

    # -- images ----------------------------------------------------------------------------
    def _usable(
        self, datamodule, records: pd.DataFrame, paths: Sequence[Path], compute, what: str
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """Per-record values of ``compute(path)``, with progress (``what``: what is computed); a
        file that fails to decode raises, or is dropped and listed in ``bad_inputs`` under
        ``data.on_bad=skip``."""
        values, keep = [], []
        for position, path in track(
            list(enumerate(paths)), f"{self.metric}: {what}", unit="images"
        ):
            try:
                values.append(compute(path))
                keep.append(position)
            except BadImageError as err:
                row = records.iloc[position]
                datamodule.bad.add(
                    datamodule.bad.decode_failed(
                        str(row["image"]),
                        err,
                        str(row["split"]),
                        db=str(row["db"]),
                        **({"path": err.path} if hasattr(err, "path") else {}),
                    )
                )
        return records.iloc[keep], np.asarray(values)

    def _cached(self, datamodule, records: pd.DataFrame, name: str, compute: Callable):
        """Per-record features ``compute(path)`` through the feature cache. Many missing files
        are computed first by ``workers`` processes (``compute`` must then pickle: a
        ``functools.partial`` of a module-level function)."""
        cache = FeatureCache(self.cache_dir, name, datamodule.data_dir)
        paths = list(datamodule.image_paths(records))
        start = time.time()
        what = f"{_split_names(records)} features"
        self._fill_in_parallel(cache, paths, compute, what)
        kept, values = self._usable(
            datamodule, records, paths, lambda path: cache.get(path, compute), what
        )
        if cache.computed:
            cache.save()
        self.extra["classical/computed"] = self.extra.get("classical/computed", 0) + cache.computed
        self.extra["classical/feature_s"] = round(
            self.extra.get("classical/feature_s", 0) + time.time() - start, 2
        )
        return kept, values

    def _fill_in_parallel(self, cache: FeatureCache, paths, compute: Callable, what: str) -> None:
        """Compute the cache's missing files with ``workers`` processes, in order, with progress;
        a file that fails is left out here (the serial pass then reports it as usual)."""
        missing = cache.missing(paths)
        if self.workers < 2 or len(missing) < PARALLEL_MIN_IMAGES:
            return
        context = multiprocessing.get_context("spawn")  # no fork of a process holding threads
        with ProcessPoolExecutor(self.workers, mp_context=context) as pool:
            results = pool.map(partial(_value_or_none, compute), missing, chunksize=4)
            done = track(
                zip(missing, results),
                f"{self.metric}: {what} ({self.workers} processes)",
                total=len(missing),
                unit="images",
            )
            for path, value in done:
                if value is not None:
                    cache.put(path, value)

    # -- measures --------------------------------------------------------------------------
    def _brisque_features(self, datamodule, records):
        compute = partial(_brisque_file, max_pixels=datamodule.max_pixels)
        return self._cached(datamodule, records, f"brisque_v{brisque.VERSION}", compute)

    def _niqe_model(self) -> tuple[dict, int, str]:
        """Our pristine model, its patch size and its cache tag (fitted once per instance)."""
        if self._niqe_fitted is None:
            patch = int(self.niqe_options.get("patch_size", 96))
            sharpness = float(self.niqe_options.get("sharpness", 0.75))
            photos = tuple(self.niqe_options.get("photos") or ())
            tag = f"ours_p{patch}_s{sharpness}_{'-'.join(photos) or 'all'}"
            model = _pristine_model(patch, sharpness, photos, self.cache_dir, tag)
            self._niqe_fitted = (model, patch, tag)
        return self._niqe_fitted

    def _niqe(self, datamodule, records):
        if self.metric == "niqe":
            model, patch, tag = self._niqe_model()
        else:
            model, patch, tag = niqe.original_model(), niqe.ORIGINAL_PATCH, "original"
        compute = partial(_niqe_file, model=model, patch=patch, max_pixels=datamodule.max_pixels)
        kept, values = self._cached(datamodule, records, f"niqe_v{niqe.VERSION}_{tag}", compute)
        return kept, self._worst_for_unscorable(-values[:, 0])

    def _worst_for_unscorable(self, scores: np.ndarray) -> np.ndarray:
        """Images a no-reference measure cannot score (NaN: flat images, no texture to fit)
        rank as the worst of the split; their count goes to results.json."""
        scores = np.array(scores, dtype=np.float64)
        unscorable = ~np.isfinite(scores)
        self.extra["classical/unscorable_images"] = int(unscorable.sum())
        if unscorable.any() and (~unscorable).any():
            scores[unscorable] = scores[~unscorable].min()
        return scores

    def _fr(self, datamodule, records):
        references = datamodule.reference_paths(records)
        compute, sign = SCORED[self.metric].compute, self._sign()
        loaded = lru_cache(maxsize=64)(lambda path: load_rgb(path, datamodule.max_pixels))
        pairs = dict(zip(datamodule.image_paths(records), references))
        return self._usable(
            datamodule,
            records,
            list(pairs),
            lambda path: sign * _rankable(compute(loaded(path), loaded(pairs[path])), loaded(path)),
            f"{_split_names(records)} scores against the references",
        )

    def _sign(self) -> int:
        return 1 if SCORED[self.metric].higher_better else -1

    def image_value(self, image: np.ndarray, reference: np.ndarray | None = None) -> float:
        """The measure of one decoded image in its own units and direction (BRISQUE, NIQE and
        GMSD: lower = better), as ``iqa-score`` reports it; full-reference metrics need
        ``reference``. The same call as ``iqa_lab.classical.score``."""
        if self.metric in SCORED:
            if self.full_reference and reference is None:
                raise ConfigError(f"{self.metric} is full-reference: it needs a reference image")
            chosen = classical_metric(self.metric)
            args = (image, reference) if self.full_reference else (image,)
            return float(chosen.compute(*args))
        if self.metric == "niqe":
            model, patch, _ = self._niqe_model()
            return niqe.score(image, model, patch)
        raise ConfigError(
            f"{self.metric} is fitted on a run's training split and has no model for single "
            f"images; score with one of {[m for m in METRICS if m != 'brisque_svr']}"
        )

    def predict(self, datamodule) -> pd.DataFrame:
        """The test records with their ``prediction`` (higher = better)."""
        records = datamodule.records
        test = records[records["split"] == "test"]
        if self.full_reference:
            test, scores = self._fr(datamodule, test)
        elif self.metric in ("niqe", "niqe_original"):
            test, scores = self._niqe(datamodule, test)
        elif self.metric == "brisque_live":
            test, feats = self._brisque_features(datamodule, test)
            scores = self._worst_for_unscorable(-brisque.original_model().predict(feats))
        elif self.metric == "brisque_svr":
            test, scores = self._brisque_svr(datamodule, test)
        else:  # another no-reference metric: per image, no cache
            compute = SCORED[self.metric].compute
            test, scores = self._usable(
                datamodule,
                test,
                list(datamodule.image_paths(test)),
                lambda path: -compute(load_rgb(path, datamodule.max_pixels)),
                f"{_split_names(test)} scores",
            )
            scores = self._worst_for_unscorable(scores)
        rows = test.copy()
        rows["prediction"] = np.asarray(scores, dtype=np.float64)
        return rows.reset_index(drop=True)

    def _brisque_svr(self, datamodule, test: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        records = datamodule.records
        parts = {}
        for split, frame in (
            ("train", records[records["split"] == "train"]),
            ("val", records[records["split"] == "val"]),
            ("test", test),
        ):
            parts[split] = self._brisque_features(datamodule, frame)
        (train, train_x), (val, val_x) = parts["train"], parts["val"]
        test_x = parts["test"][1]
        self.extra["classical/nonfinite_images"] = int(
            sum((~np.isfinite(x)).any(axis=1).sum() for x in (train_x, val_x, test_x))
        )
        model, chosen = brisque.fit_svr(
            train_x,
            train["mos"].to_numpy(),
            val_x,
            val["mos"].to_numpy(),
            C=self.svr_options["C"],
            gamma=self.svr_options["gamma"],
            epsilon=float(self.svr_options["epsilon"]),
        )
        log.info(
            "brisque_svr: C=%s gamma=%s (val SRCC %.4f)",
            chosen["C"],
            chosen["gamma"],
            chosen["val_srcc"],
        )
        self.extra.update(
            {
                "val/srcc": chosen["val_srcc"],
                "classical/svr_C": chosen["C"],
                "classical/svr_gamma": chosen["gamma"],
            }
        )
        test, test_x = parts["test"]
        return test, model.predict(np.where(np.isfinite(test_x), test_x, np.nan))


def _rankable(value: float, image: np.ndarray) -> float:
    """A full-reference value fit for correlations: an identical pair's PSNR is ∞ (as the
    original's), taken here as the PSNR of the smallest difference two 8-bit images of that size
    can have (one level in one channel of one pixel): ranked above every distorted image, finite."""
    if value == np.inf:
        return float(10 * np.log10(255.0**2 * image.size))
    return value


PARALLEL_MIN_IMAGES = 64  # fewer missing files are computed in this process (no start-up cost)


def _brisque_file(path: Path, max_pixels: int | None) -> np.ndarray:
    return brisque.features(load_rgb(path, max_pixels))


def _niqe_file(path: Path, model: dict, patch: int, max_pixels: int | None) -> np.ndarray:
    return np.array([niqe.score(load_rgb(path, max_pixels), model, patch)])


def _value_or_none(compute: Callable, path: Path):
    """``compute(path)``, or None when the file cannot be decoded (a worker's failure)."""
    try:
        return compute(path)
    except BadImageError:
        return None


def _split_names(records: pd.DataFrame) -> str:
    """``test``, or ``train/val`` — which splits a pass covers, for its progress line."""
    return "/".join(sorted(set(records["split"])))


def _pristine_model(
    patch_size: int, sharpness: float, photos: tuple[str, ...], cache_dir: str | None, tag: str
) -> dict:
    """Our NIQE pristine model, fitted once and kept in the cache directory."""
    from iqa_lab.data.pristine import PRISTINE_PHOTOS, load_pristine

    path = (
        Path(cache_dir) / "classical" / f"niqe_v{niqe.VERSION}_pristine_{tag}.npz"
        if cache_dir
        else None
    )
    cached = read_cache(path, _read_pristine_model)
    if cached is not None:
        return cached
    names = photos or tuple(PRISTINE_PHOTOS)
    log.info(
        "NIQE: fitting the pristine model on %d shipped photos (%d px patches)",
        len(names),
        patch_size,
    )
    model = niqe.fit_pristine_model([load_pristine(n) for n in names], patch_size, sharpness)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            np.savez(tmp, **model)
    return model


def _read_pristine_model(path: Path) -> dict:
    with np.load(path) as data:
        model = {key: data[key] for key in data.files}
    missing = {"mu", "cov"} - set(model)
    if missing:
        raise KeyError(f"no {sorted(missing)} in the saved NIQE pristine model")
    return model
