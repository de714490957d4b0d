"""BRISQUE (Mittal, Moorthy & Bovik, TIP 2012): 36 natural-scene-statistics features and two
regressors.

Features: the ``brisque`` package's own feature code (``BRISQUE.calculate_brisque_features``),
called exactly as its ``score()`` does — grey by ``skimage.color.rgb2gray`` on [0, 1], MSCN with a
7x7 Gaussian window (σ = 7/6) and C = 1/255, AGGD fits of the MSCN map and its four pair products,
then again on the grey image halved by OpenCV's bicubic resize. These are the conventions its
shipped regressor was made for. ``score()`` itself is not used: on NumPy ≥ 2 it fails converting
its per-feature arrays; we take the scalar of each feature.

- ``live_score``: the LIVE-trained ε-SVR the package ships (``models/svm.txt``, libsvm format, and
  ``models/normalize.pickle``, the per-feature min/max that map features onto [-1, 1]), loaded
  directly and evaluated by libsvm. Lower = better (about 0 for pristine, 100 for very distorted).
- ``fit_svr``: a scikit-learn RBF SVR on the same features of a run's training split (features
  scaled to [-1, 1] on the training split as in the original; features the fits could not estimate
  on flat images take the training median), C and γ chosen by SRCC on the validation split. It
  predicts the normalised MOS (higher = better).
"""

from __future__ import annotations

import functools
import importlib.util
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from iqa_lab.errors import ConfigError

FEATURES = 36


@functools.lru_cache(maxsize=1)
def _package():
    """The ``brisque`` package's BRISQUE object (it loads the shipped model on construction)."""
    from brisque import BRISQUE

    return BRISQUE(url=False)


def model_files() -> dict[str, Path]:
    """Paths of the shipped LIVE model: ``svm`` (libsvm text) and ``normalize`` (pickle)."""
    spec = importlib.util.find_spec("brisque")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the 'brisque' package is not installed: pip install brisque==0.2.0")
    folder = Path(spec.submodule_search_locations[0]) / "models"
    return {"svm": folder / "svm.txt", "normalize": folder / "normalize.pickle"}


def features(image: np.ndarray) -> np.ndarray:
    """The 36 BRISQUE features of an ``(H, W, 3)`` uint8 RGB image (18 per scale)."""
    import cv2
    from skimage.color import rgb2gray

    package = _package()
    grey = rgb2gray(image)
    half = cv2.resize(grey, None, fx=1 / 2, fy=1 / 2, interpolation=cv2.INTER_CUBIC)
    values = [
        package.calculate_brisque_features(scale, kernel_size=7, sigma=7 / 6)
        for scale in (grey, half)
    ]
    return np.array([float(np.ravel(v)[0]) for v in np.concatenate(values)])


class LiveModel:
    """The shipped LIVE-trained regressor, evaluated by libsvm."""

    def __init__(self):
        from libsvm import svmutil

        files = model_files()
        self.model = svmutil.svm_load_model(str(files["svm"]))
        with open(files["normalize"], "rb") as handle:
            params = pickle.load(handle)
        self.low = np.asarray(params["min_"], dtype=np.float64)
        self.high = np.asarray(params["max_"], dtype=np.float64)

    def scale(self, feats: np.ndarray) -> np.ndarray:
        return -1 + 2 * (feats - self.low) / (self.high - self.low)

    def predict(self, feats: np.ndarray) -> np.ndarray:
        """BRISQUE scores (lower = better) of ``(N, 36)`` features. A feature the fits could not
        estimate (flat images: NaN/inf) is set to the middle of its range (0 after scaling)."""
        from libsvm import svmutil

        scaled = self.scale(np.asarray(feats, dtype=np.float64))
        scores = []
        for row in np.atleast_2d(np.where(np.isfinite(scaled), scaled, 0.0)):
            nodes, _ = svmutil.gen_svm_nodearray([float(v) for v in row])
            scores.append(svmutil.libsvm.svm_predict(self.model, nodes))
        return np.asarray(scores)


@functools.lru_cache(maxsize=1)
def live_model() -> LiveModel:
    return LiveModel()


def live_score(image: np.ndarray) -> float:
    """BRISQUE score of one image with the shipped LIVE model (lower = better)."""
    return float(live_model().predict(features(image)[None])[0])


def fit_svr(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    C: Sequence[float],
    gamma: Sequence[float],
    epsilon: float,
):
    """RBF SVR on [-1, 1]-scaled features, fitted on the training split; (C, γ) = the grid point
    with the best validation SRCC. Returns (pipeline, {"C", "gamma", "val_srcc", "grid"})."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler
    from sklearn.svm import SVR

    train_x, val_x = (np.where(np.isfinite(x), x, np.nan) for x in (train_x, val_x))
    if len(train_x) < 2 or len(val_x) < 2:
        raise ConfigError(
            f"brisque_svr needs training and validation images; got {len(train_x)} "
            f"and {len(val_x)} (protocol.val_fraction must be > 0)"
        )
    best, grid = None, []
    for c in C:
        for g in gamma:
            # Features the fits could not estimate (flat images) take the training median.
            model = make_pipeline(
                SimpleImputer(strategy="median"),
                MinMaxScaler((-1, 1)),
                SVR(C=c, gamma=g, epsilon=epsilon),
            )
            model.fit(train_x, train_y)
            srcc = float(spearmanr(model.predict(val_x), val_y).statistic)
            srcc = srcc if np.isfinite(srcc) else -1.0
            grid.append({"C": float(c), "gamma": float(g), "val_srcc": srcc})
            if best is None or srcc > best[1]["val_srcc"]:
                best = (model, grid[-1])
    return best[0], {**best[1], "grid": grid}
