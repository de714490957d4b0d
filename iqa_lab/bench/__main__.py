"""``python -m iqa_lab.bench``: the speed ratios with goals and verdicts (``conf/bench.yaml``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from iqa_lab.bench.run import run_bench
from iqa_lab.cli import run_command


@hydra.main(version_base="1.3", config_path="../../conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    run_bench(cfg)


if __name__ == "__main__":
    run_command(main)
