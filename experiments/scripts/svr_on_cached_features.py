"""The TaylorKAN abstract's baseline: an SVR on frozen features, here the very features and splits
of ``experiment=biq2021_fast`` (and of its ``regressor=taylorkan`` run).

Research helper for issue 22 item 3 (related work II). For each repeat of ``protocol=random`` it
composes the training config (``experiment=biq2021_fast`` + the given overrides), sets up the
DataModule and reads every split's cached lite0 multi-level statistics through the training's
own feature cache (``callbacks.feature_cache``: no backbone pass when the cache is warm), then fits
an RBF SVR with ``biq2021_fast_exploration.py``'s regressor (features standardised on the training
rows, C and gamma chosen on validation SRCC, refitted on train + val, scored once on test).

    python experiments/scripts/svr_on_cached_features.py data.data_dir=../shared/data/BIQ2021
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import hydra
import numpy as np
import torch
from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from biq2021_fast_exploration import REGRESSORS, run_repeat  # noqa: E402

CONF = str(Path(__file__).resolve().parents[2] / "conf")


def cached_split_features(overrides: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, MOS and split name of every train / val / test image, as the training reads them
    (one view: the recipe caches one)."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    datamodule = hydra.utils.instantiate(cfg.data, protocol=cfg.protocol)
    model = hydra.utils.instantiate(cfg.model)
    cache = hydra.utils.instantiate(cfg.callbacks.feature_cache)
    datamodule.prepare_data()
    datamodule.setup("fit")
    trainer = SimpleNamespace(
        datamodule=datamodule, strategy=SimpleNamespace(root_device=torch.device("cpu"))
    )
    cache.setup(trainer, model, "fit")
    xs, ys, splits = [], [], []
    for split in ("train", "val", "test"):
        dataset = datamodule.datasets[split]
        dataset.set_augment_seed(None)
        for i in range(len(dataset)):
            item = dataset[i]
            xs.append(item["image"].float().numpy())
            ys.append(float(item["mos"]))
            splits.append(split)
    return np.stack(xs), np.asarray(ys), np.asarray(splits)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (data.data_dir=...)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="append the summary as a JSON line")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    results = []
    for repeat in range(args.repeats):
        overrides = [
            "experiment=biq2021_fast",
            "protocol=random",
            *args.overrides,
            f"protocol.repeat={repeat}",
        ]
        x, y, split = cached_split_features(overrides)
        result = run_repeat(x, y, split, REGRESSORS["svr"], power=False)
        print(
            f"repeat {repeat}: {x.shape[0]} images x {x.shape[1]} features; test SRCC "
            f"{result['srcc']:.4f} PLCC {result['plcc']:.4f}; chosen {result['params']} "
            f"(val SRCC {result['val_srcc']:.4f})",
            flush=True,
        )
        results.append(result)
    summary = {
        "repeats": results,
        **{k: float(np.median([r[k] for r in results])) for k in ("srcc", "plcc", "plcc_l4")},
        "wall_s": time.perf_counter() - began,
    }
    print(
        f"median over {args.repeats} repeats: SRCC {summary['srcc']:.4f} PLCC "
        f"{summary['plcc']:.4f} PLCC(l4) {summary['plcc_l4']:.4f}; {summary['wall_s']:.0f} s"
    )
    if args.json:
        with args.json.open("a") as out:
            out.write(json.dumps(summary, default=str) + "\n")


if __name__ == "__main__":
    main()
