"""Config resolvers that name a run for the loggers (``conf/logger/wandb.yaml``): the multirun it
belongs to and the tags its config implies. Registered on ``import iqa_lab``."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf


def multirun_name() -> str | None:
    """The name of the multirun's folder (``hydra.sweep.dir``) in a job of a multirun, else None:
    the runs of one sweep share it."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return Path(str(hydra_cfg.sweep.dir)).name


def run_tags(tags, named: dict) -> list[str]:
    """``tags`` (the user's) followed by ``name:value`` for each of ``named`` that has a value
    (an evaluation of a checkpoint has no model choice)."""
    own = list(tags or [])
    return own + [f"{name}:{value}" for name, value in named.items() if value not in (None, "")]


def register() -> None:
    OmegaConf.register_new_resolver("multirun_name", multirun_name, replace=True)
    OmegaConf.register_new_resolver("run_tags", run_tags, replace=True)
