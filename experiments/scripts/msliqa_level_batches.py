"""Throughput of MSLIQA's two ways of batching zoom levels (``model.level_batches``).

``together``: every step puts one batch per level through the network (loss = mean over levels);
``alternate``: one level per step, in turn. Both train on the same loader (the zoom transform makes
every level's views of each image, as in a real run), with AdamW, for ``--steps`` timed steps after
one warm-up step, the two modes interleaved ``--rounds`` times (the median is reported, so a busy
machine disturbs both alike). Throughput is in trained views per second (one view = one image at
one level through backbone and head, forward and backward).

    python experiments/scripts/msliqa_level_batches.py --experiment msliqa_synthetic \
        [model.backbone.frozen_stages=0]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from iqa_lab.data.collate import IQACollate
from iqa_lab.data.transforms import build_transform
from iqa_lab.models.msliqa import MSLIQA

CONF = str(Path(__file__).resolve().parents[2] / "conf")


def model_config(experiment: str, zoom: str, overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", [f"experiment={experiment}", f"model.zoom={zoom}", *overrides])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model.pop("_target_"), model.pop("_recursive_")
    model["backbone"]["pretrained"] = False  # speed does not depend on the weights
    model["scheduler"] = None
    return model


def loader(levels: list, side: int, batch: int, steps: int) -> torch.utils.data.DataLoader:
    rng = np.random.default_rng(0)
    transform = build_transform("train", zoom=levels, hflip=True)
    images = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(batch)]

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return batch * (steps + 1)

        def __getitem__(self, i):
            return {
                **transform(image=images[i % batch]),
                "mos": torch.tensor(float(rng.uniform())),
                "index": torch.tensor(i),
            }

    return torch.utils.data.DataLoader(Items(), batch_size=batch, collate_fn=IQACollate())


class Stepping(MSLIQA):
    """MSLIQA counting its own steps (no Lightning trainer here), so ``alternate`` takes the
    levels in turn as in a real run."""

    steps = 0

    @property
    def global_step(self) -> int:
        return self.steps


def views_per_second(config: dict, mode: str, batches) -> float:
    torch.manual_seed(0)
    model = Stepping(**{**config, "level_batches": mode}).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.log = lambda *a, **k: None
    views, start = 0, None
    for step, batch in enumerate(batches):
        if step == 1:  # after the warm-up step
            views, start = 0, time.perf_counter()
        loss, _ = model.model_step(batch, "train")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.steps += 1
        levels = len(model.head_names) if mode == "together" else 1
        views += levels * len(batch["mos"])
    return views / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="msliqa_synthetic")
    parser.add_argument("--zoom", default="mixed")
    parser.add_argument("--side", type=int, default=192, help="image side (pixels)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8, help="timed steps (a multiple of 4)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "overrides", nargs="*", help="config overrides, e.g. model.backbone.frozen_stages=0"
    )
    args = parser.parse_args()
    config = model_config(args.experiment, args.zoom, args.overrides)
    levels = OmegaConf.to_container(OmegaConf.create(config["zoom_sets"]))[args.zoom]
    results: dict[str, list[float]] = {"together": [], "alternate": []}
    for _ in range(args.rounds):
        for mode in results:
            batches = loader(levels, args.side, args.batch, args.steps)
            results[mode].append(views_per_second(config, mode, batches))
    print(
        f"{args.experiment} zoom={args.zoom} backbone={config['backbone']['name']} "
        f"frozen_stages={config['backbone'].get('frozen_stages', 0)} batch={args.batch} "
        f"side={args.side} threads={torch.get_num_threads()}"
    )
    for mode, values in results.items():
        print(
            f"{mode}: median {statistics.median(values):.1f} views/s "
            f"(rounds: {', '.join(f'{v:.1f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
