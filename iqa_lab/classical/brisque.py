"""BRISQUE (Mittal, Moorthy & Bovik, TIP 2012): 36 natural-scene-statistics features and an SVR.

``brisque`` (the original): ``brisque_feature.m`` and ``brisquescore.m`` of the LIVE release —
grey by MATLAB ``rgb2gray`` on uint8, MSCN with a 7x7 Gaussian (σ 7/6, zero padding, C = 1 on
0..255), GGD of the MSCN map ([α, σ²]) and AGGD of its four ``circshift`` pair products ([α, η,
σl², σr²]), then the same on ``imresize(grey, 0.5)``. The score is the release's ε-SVR
(``allmodel``, 774 support vectors, RBF γ 0.05) on the features scaled by ``allrange`` to
[-1, 1], with the release's text round trips: features written with ``%f`` (6 decimals) and
scaled ones with ``%g`` (6 significant digits), as ``svm-scale`` prints them. Lower = better
(about 0 for pristine, 100 for very distorted). Both files ship in ``classical/data`` under the
release's copyright notice (``classical/data/NOTICE.md``).

``brisque_package``: the ``brisque`` PyPI package's pipeline and model (``svm.txt``, 770
support vectors, its own feature conventions: skimage grey on [0, 1], C = 1/255, OpenCV
resize) — a different model; kept for comparison with results computed by that package.

``fit_svr``: an RBF SVR on the original features of a run's training split (``brisque_svr``).
"""

from __future__ import annotations

import functools
import importlib.util
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import spearmanr

from iqa_lab.classical import nss
from iqa_lab.classical.matlab import imresize, rgb2gray
from iqa_lab.errors import ConfigError

FEATURES = 36
DATA = Path(__file__).resolve().parent / "data"
VERSION = 2  # bump when the feature code changes: cached features start afresh


def scale_features(grey: np.ndarray) -> np.ndarray:
    """The 18 features of one scale of ``brisque_feature.m`` (grey on 0..255)."""
    structdis, _ = nss.mscn(grey, padding="zero")
    alpha, std = nss.ggd_fit(structdis)
    feats = [alpha, std**2]
    for pair in nss.neighbour_products(structdis):
        alpha, left, right = nss.aggd_fit(pair)
        with np.errstate(invalid="ignore", divide="ignore"):
            const = nss.gamma_fn(2 / alpha) / nss.gamma_fn(1 / alpha) * nss.beta_factor(alpha)
        feats += [alpha, (right - left) * const, left**2, right**2]
    return np.stack(feats, axis=-1)


def features(image: np.ndarray) -> np.ndarray:
    """The 36 original BRISQUE features of a uint8 RGB (or grey) image, or ``(N, 36)`` of a
    batch of equal-size images."""
    grey = rgb2gray(image)
    return np.concatenate([scale_features(grey), scale_features(imresize(grey, 0.5))], axis=-1)


def _read_range(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    lines = path.read_text().split("\n")
    lower, upper = (float(v) for v in lines[1].split())
    rows = np.array([[float(v) for v in line.split()] for line in lines[2:] if line.strip()])
    if rows.shape != (FEATURES, 3):
        raise ValueError(f"{path}: expected {FEATURES} feature ranges, got {rows.shape[0]}")
    return rows[:, 1], rows[:, 2], (lower, upper)


def _read_libsvm_model(path: Path) -> dict:
    """An ε-SVR with an RBF kernel in libsvm's text format: gamma, rho, coefficients, SVs."""
    header, coefs, vectors = {}, [], []
    with open(path) as handle:
        for line in handle:
            if line.strip() == "SV":
                break
            key, _, value = line.partition(" ")
            header[key] = value.strip()
        for line in handle:
            parts = line.split()
            if not parts:
                continue
            coefs.append(float(parts[0]))
            row = np.zeros(FEATURES)
            for item in parts[1:]:
                index, value = item.split(":")
                row[int(index) - 1] = float(value)
            vectors.append(row)
    if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
        raise ValueError(f"{path}: expected an epsilon_svr with an rbf kernel, got {header}")
    return {
        "gamma": float(header["gamma"]),
        "rho": float(header["rho"]),
        "coef": np.array(coefs),
        "sv": np.stack(vectors),
    }


class OriginalModel:
    """The release's ``allrange`` scaling and ``allmodel`` SVR, with its text round trips."""

    def __init__(self, folder: Path = DATA):
        self.low, self.high, (self.lower, self.upper) = _read_range(folder / "brisque_allrange")
        model = _read_libsvm_model(folder / "brisque_allmodel")
        self.gamma, self.rho, self.coef, self.sv = (
            model[k] for k in ("gamma", "rho", "coef", "sv")
        )

    def scale(self, feats: np.ndarray) -> np.ndarray:
        """``svm-scale -r allrange`` of features written by ``fprintf('%f')``."""
        printed = np.vectorize(lambda v: float(f"{v:f}"))(feats)
        scaled = self.lower + (self.upper - self.lower) * (printed - self.low) / (
            self.high - self.low
        )
        scaled = np.where(printed == self.low, self.lower, scaled)
        scaled = np.where(printed == self.high, self.upper, scaled)
        return np.vectorize(lambda v: float(f"{v:g}"))(scaled)

    def predict(self, feats: np.ndarray) -> np.ndarray:
        """Scores (lower = better) of ``(N, 36)`` features; NaN where a feature is not finite
        (no AGGD side: a flat image)."""
        feats = np.atleast_2d(np.asarray(feats, dtype=np.float64))
        finite = np.isfinite(feats).all(axis=1)
        scaled = self.scale(np.where(np.isfinite(feats), feats, 0.0))
        kernel = np.exp(-self.gamma * cdist(scaled, self.sv, "sqeuclidean"))
        return np.where(finite, kernel @ self.coef - self.rho, np.nan)


@functools.lru_cache(maxsize=1)
def original_model() -> OriginalModel:
    return OriginalModel()


def score(image: np.ndarray):
    """Original BRISQUE of a uint8 RGB image (a float), or of a batch (an ``(N,)`` array)."""
    feats = features(image)
    values = original_model().predict(feats)
    return float(values[0]) if feats.ndim == 1 else values


# -- the `brisque` package's pipeline (brisque_package) ----------------------------------------
@functools.lru_cache(maxsize=1)
def _package():
    """The ``brisque`` package's BRISQUE object (it loads the shipped model on construction)."""
    from brisque import BRISQUE

    return BRISQUE(url=False)


def package_model_files() -> dict[str, Path]:
    """Paths of the package's model: ``svm`` (libsvm text) and ``normalize`` (pickle)."""
    spec = importlib.util.find_spec("brisque")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the 'brisque' package is not installed: pip install brisque==0.2.0")
    folder = Path(spec.submodule_search_locations[0]) / "models"
    return {"svm": folder / "svm.txt", "normalize": folder / "normalize.pickle"}


def package_features(image: np.ndarray) -> np.ndarray:
    """The package's 36 features of an ``(H, W, 3)`` uint8 RGB image, computed as its
    ``score()`` does (its ``score()`` itself fails on NumPy ≥ 2)."""
    import cv2
    from skimage.color import rgb2gray as skimage_gray

    package = _package()
    grey = skimage_gray(image)
    half = cv2.resize(grey, None, fx=1 / 2, fy=1 / 2, interpolation=cv2.INTER_CUBIC)
    values = [
        package.calculate_brisque_features(scale, kernel_size=7, sigma=7 / 6)
        for scale in (grey, half)
    ]
    return np.array([float(np.ravel(v)[0]) for v in np.concatenate(values)])


class PackageModel:
    """The package's regressor (``svm.txt`` + ``normalize.pickle``), evaluated by libsvm."""

    def __init__(self):
        from libsvm import svmutil

        files = package_model_files()
        self.model = svmutil.svm_load_model(str(files["svm"]))
        with open(files["normalize"], "rb") as handle:
            params = pickle.load(handle)
        self.low = np.asarray(params["min_"], dtype=np.float64)
        self.high = np.asarray(params["max_"], dtype=np.float64)

    def scale(self, feats: np.ndarray) -> np.ndarray:
        return -1 + 2 * (feats - self.low) / (self.high - self.low)

    def predict(self, feats: np.ndarray) -> np.ndarray:
        """Scores of ``(N, 36)`` features; a feature the fits could not estimate (NaN/inf) is
        set to the middle of its range (0 after scaling)."""
        from libsvm import svmutil

        scaled = self.scale(np.asarray(feats, dtype=np.float64))
        scores = []
        for row in np.atleast_2d(np.where(np.isfinite(scaled), scaled, 0.0)):
            nodes, _ = svmutil.gen_svm_nodearray([float(v) for v in row])
            scores.append(svmutil.libsvm.svm_predict(self.model, nodes))
        return np.asarray(scores)


@functools.lru_cache(maxsize=1)
def package_model() -> PackageModel:
    return PackageModel()


def package_score(image: np.ndarray) -> float:
    """BRISQUE of one image by the ``brisque`` package's pipeline and model (lower = better)."""
    return float(package_model().predict(package_features(image)[None])[0])


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
