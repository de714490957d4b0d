"""Step time of a backbone with and without gradient checkpointing, measured side by side.

One process, plain and checkpointed training steps alternating (a shared machine: every round meets
the same load), the fastest of each kind after the first round kept.

    python experiments/scripts/grad_checkpointing_cost.py --backbone tf_efficientnet_lite0 \
        --batch 16 --size 384 --rounds 4 --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch

from iqa_lab.nn.backbones import Backbone


def step_seconds(backbone: Backbone, images: torch.Tensor) -> float:
    backbone.zero_grad()
    began = time.perf_counter()
    backbone(images).sum().backward()
    return time.perf_counter() - began


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    nets = {
        on: Backbone(args.backbone, pretrained=True, grad_checkpointing=on).train()
        for on in (False, True)
    }
    images = torch.rand(args.batch, 3, args.size, args.size)
    times: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(args.rounds):
        for on, net in nets.items():
            times[on].append(step_seconds(net, images))
        plain, checkpointed = times[False][-1], times[True][-1]
        print(f"round {round_}: plain {plain:.2f} s, checkpointed {checkpointed:.2f} s")
    plain, checkpointed = (min(times[on][1:] or times[on]) for on in (False, True))
    print(
        f"fastest step: plain {plain:.2f} s, checkpointed {checkpointed:.2f} s, "
        f"ratio {checkpointed / plain:.2f}"
    )


if __name__ == "__main__":
    main()
