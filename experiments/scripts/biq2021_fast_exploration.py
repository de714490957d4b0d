"""Which frozen-feature recipe reaches SRCC >= 0.85 / PLCC >= 0.87 on the shared BIQ2021 images?

Research for issue 15 item 3. Reads the cached multi-level pooled features of
``frozen_features.py`` (extract them first; this script never runs a backbone) and compares
regressors over feature sets under iqa_lab's ``protocol=random`` splits (``iqa_lab.data.protocols``,
seed 0, repeats 0..R-1, 80/20, validation = 20% of the training contents). Hyper-parameters are
chosen on validation SRCC, never on test; the chosen model is then refitted on train+val.
Every regressor is a kernel method over one Gram matrix per repeat (ridge = linear kernel ridge),
so a grid costs a few Cholesky solves on a shared 2-core machine. Each
step prints the median over repeats of test SRCC, PLCC and PLCC after the 4-parameter logistic
(``iqa_lab.evaluation.metrics``), and its wall time.

    python experiments/scripts/biq2021_fast_exploration.py --data-dir ../shared/data/BIQ2021 \
        --step lite0@384:ridge --step lite0@384f+lite2@224:svr
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.kernel_ridge import KernelRidge
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frozen_features import StagePooler, biq2021_records, cache_file  # noqa: E402

from iqa_lab.data.protocols import Protocol, assign_splits  # noqa: E402
from iqa_lab.evaluation.metrics import plcc, plcc_fitted, srcc  # noqa: E402

BACKBONES = {"lite0": "tf_efficientnet_lite0", "lite2": "tf_efficientnet_lite2"}
FEATURE_BLOCK = re.compile(r"^(lite0|lite2)@(\d+)(f?)(?:/s(\d)-(\d))?$")


@dataclass(frozen=True)
class FeatureBlock:
    """One backbone's features: views averaged, optionally only stages ``first..last`` (1-based,
    in feature order: the 7 block stages, then the head)."""

    backbone: str
    views: tuple[str, ...]
    stages: tuple[int, int] | None = None


def feature_blocks(name: str) -> list[FeatureBlock]:
    """``lite0@384f/s5-8+lite2@224`` -> its blocks; ``f`` averages the features of the image and
    its mirror image, ``/s5-8`` keeps stages 5 to 8."""
    blocks = []
    for part in name.split("+"):
        match = FEATURE_BLOCK.match(part)
        if not match:
            raise SystemExit(
                f"feature set '{name}': '{part}' is not <lite0|lite2>@<size>[f][/s<a>-<b>] "
                f"(e.g. lite0@384f/s5-8+lite2@224)"
            )
        backbone, size, flip, first, last = match.groups()
        views = (f"resize{size}",) + ((f"resize{size}_flip",) if flip else ())
        stages = (int(first), int(last)) if first else None
        blocks.append(FeatureBlock(BACKBONES[backbone], views, stages))
    return blocks


def stage_columns(backbone: str, stages: tuple[int, int]) -> slice:
    """The feature columns of stages ``first..last``: each stage holds mean then std."""
    widths = [2 * w for w in StagePooler(backbone).stage_widths()]
    first, last = stages
    if not 1 <= first <= last <= len(widths):
        raise SystemExit(f"{backbone}: stages {first}-{last} outside 1-{len(widths)}")
    return slice(sum(widths[: first - 1]), sum(widths[:last]))


def load_features(name: str, paths: list[Path]) -> np.ndarray:
    """The feature set ``name`` of ``paths`` from the cache, blocks concatenated."""
    blocks = []
    for block in feature_blocks(name):
        views_features = []
        for view in block.views:
            file = cache_file(block.backbone, view, paths)
            if not file.is_file():
                raise SystemExit(
                    f"{file} is missing: extract it first with python "
                    f"experiments/scripts/frozen_features.py --data-dir <BIQ2021> "
                    f"--backbone {block.backbone} --view {view}"
                )
            views_features.append(np.load(file))
        features = np.mean(views_features, axis=0)
        if block.stages:
            features = features[:, stage_columns(block.backbone, block.stages)]
        blocks.append(features)
    return np.concatenate(blocks, axis=1)


def signed_sqrt(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.sqrt(np.abs(x))


@dataclass(frozen=True)
class Regressor:
    """A kernel regressor family and its validation grid. ``gamma`` of the RBF kernel is given per
    feature dimension (``gamma / dims``): standardised features keep it meaningful at any width."""

    build: callable
    kernel: str
    grid: dict


REGRESSORS = {
    "ridge": Regressor(
        lambda alpha: KernelRidge(alpha=alpha, kernel="precomputed"),
        "linear",
        {"alpha": [float(a) for a in np.logspace(2, 5, 7)]},
    ),
    "krr": Regressor(
        lambda alpha: KernelRidge(alpha=alpha, kernel="precomputed"),
        "rbf",
        {"alpha": [0.01, 0.03, 0.1, 0.3], "gamma": [0.1, 0.25, 0.5]},
    ),
    "svr": Regressor(
        lambda C: SVR(C=C, epsilon=0.1, kernel="precomputed"),
        "rbf",
        {"C": [1.0, 3.0, 10.0], "gamma": [0.25, 0.5, 1.0]},
    ),
}


def grid_points(grid: dict) -> list[dict]:
    keys = sorted(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def standardised(x: np.ndarray, fit_rows: np.ndarray, power: bool) -> np.ndarray:
    """Signed square root (optional), then standardisation fitted on ``fit_rows`` only."""
    x = signed_sqrt(x) if power else x
    return StandardScaler().fit(x[fit_rows]).transform(x).astype(np.float32)


def kernel_matrix(gram: np.ndarray, kind: str, gamma: float | None, dims: int) -> np.ndarray:
    """The linear (``gram``) or RBF kernel over all images from their Gram matrix."""
    if kind == "linear":
        return gram
    sq = np.diag(gram)
    distances = np.maximum(sq[:, None] + sq[None, :] - 2 * gram, 0)
    return np.exp(-(gamma / dims) * distances)


def fit_predict(regressor, params, kernel, y, fit, predict) -> np.ndarray:
    """Fit on rows ``fit`` (targets standardised), predict rows ``predict`` on the MOS scale."""
    y_mean, y_std = y[fit].mean(), y[fit].std()
    model_params = {k: v for k, v in params.items() if k != "gamma"}
    model = regressor.build(**model_params)
    model.fit(kernel[np.ix_(fit, fit)], (y[fit] - y_mean) / y_std)
    return model.predict(kernel[np.ix_(predict, fit)]) * y_std + y_mean


def run_repeat(x, y, split, regressor: Regressor, power: bool) -> dict:
    """Select on val SRCC, refit on train+val, score on test. Features are standardised on the
    training rows; test labels are read only for the final scores."""
    train, val, test = (np.flatnonzero(split == s) for s in ("train", "val", "test"))
    xs = standardised(x, train, power)
    gram = (xs @ xs.T).astype(np.float64)
    kernels, best = {}, None
    for params in grid_points(regressor.grid):
        gamma = params.get("gamma")
        if gamma not in kernels:
            kernels[gamma] = kernel_matrix(gram, regressor.kernel, gamma, x.shape[1])
        score = srcc(fit_predict(regressor, params, kernels[gamma], y, train, val), y[val])
        if best is None or score > best[0]:
            best = (score, params)
    fit = np.concatenate([train, val])
    pred = fit_predict(regressor, best[1], kernels[best[1].get("gamma")], y, fit, test)
    return {
        "val_srcc": best[0],
        "params": best[1],
        "srcc": srcc(pred, y[test]),
        "plcc": plcc(pred, y[test]),
        "plcc_l4": plcc_fitted(pred, y[test], 4),
    }


def subsample(split: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Keep ``fraction`` of the training and of the validation rows (a learning curve: the test
    rows never change); the dropped rows become ``unused``."""
    if fraction >= 1:
        return split
    split, rng = split.astype(object), np.random.default_rng(seed)  # "unused" fits any width
    for side in ("train", "val"):
        rows = np.flatnonzero(split == side)
        dropped = rng.choice(rows, size=len(rows) - round(fraction * len(rows)), replace=False)
        split[dropped] = "unused"
    return split


def run_step(step: str, records, repeats: int, power: bool, fraction: float = 1.0) -> dict:
    features_name, regressor_name = step.split(":")
    began = time.perf_counter()
    x = load_features(features_name, list(records["path"]))
    y = records["mos"].to_numpy(dtype=float)
    results = []
    for repeat in range(repeats):
        protocol = Protocol(name="random", seed=0, repeat=repeat, repeats=repeats)
        split = assign_splits(records, protocol)["split"].to_numpy()
        split = subsample(split, fraction, seed=repeat)
        results.append(run_repeat(x, y, split, REGRESSORS[regressor_name], power))
    summary = {
        "step": step,
        "power": power,
        "dims": x.shape[1],
        "train_fraction": fraction,
        "fit_images": int(np.isin(split, ["train", "val"]).sum()),
        "repeats": results,
        **{k: float(np.median([r[k] for r in results])) for k in ("srcc", "plcc", "plcc_l4")},
        "fit_wall_s": time.perf_counter() - began,
    }
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--step", action="append", required=True, help="<feature set>:<regressor>")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--power", action="store_true", help="signed sqrt before scaling")
    parser.add_argument(
        "--train-fraction",
        type=float,
        default=1.0,
        help="keep this fraction of the training and validation rows (learning curve)",
    )
    parser.add_argument("--json", type=Path, help="append each step's summary as a JSON line")
    args = parser.parse_args(argv)
    for step in args.step:
        features, _, regressor = step.partition(":")
        feature_blocks(features)
        if regressor not in REGRESSORS:
            raise SystemExit(
                f"--step {step}: unknown regressor '{regressor}'; known: {sorted(REGRESSORS)}"
            )
    records = biq2021_records(args.data_dir)
    for step in args.step:
        summary = run_step(step, records, args.repeats, args.power, args.train_fraction)
        per = ", ".join(f"{r['srcc']:.4f}" for r in summary["repeats"])
        print(
            f"| {step}{' +sqrt' if args.power else ''} | {summary['fit_images']} fit images | "
            f"{summary['dims']} | "
            f"{summary['srcc']:.4f} | {summary['plcc']:.4f} | {summary['plcc_l4']:.4f} | "
            f"{summary['fit_wall_s']:.0f} s | SRCC per repeat {per}; "
            f"chosen {[r['params'] for r in summary['repeats']]} |",
            flush=True,
        )
        if args.json:
            with args.json.open("a") as out:
                out.write(json.dumps(summary, default=str) + "\n")


if __name__ == "__main__":
    main()
