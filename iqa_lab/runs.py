"""Plumbing of the entry points: instantiation from config (trainer, callbacks, loggers), the
seeded DataModule, reuse of finished runs and the task wrapper. The run's outputs are
``evaluation.outputs``' business."""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from iqa_lab.cli import end_single_run, log_traceback_to_files
from iqa_lab.config_checks import check_config
from iqa_lab.data.datamodule import IQADataModule
from iqa_lab.evaluation.outputs import print_summary
from iqa_lab.evaluation.results import write_results_json
from iqa_lab.evaluation.runstore import entry_commit, find_finished, left_out
from iqa_lab.phases import PhaseClock

log = logging.getLogger("iqa_lab")


def instantiate_group(cfg: DictConfig | None) -> list:
    """Callbacks or loggers: every entry of the group that has a ``_target_``."""
    if not cfg:
        return []
    return [
        hydra.utils.instantiate(c)
        for c in cfg.values()
        if isinstance(c, DictConfig) and "_target_" in c
    ]


def seeded_datamodule(
    cfg: DictConfig, stage: str, clock: PhaseClock | None = None
) -> IQADataModule:
    """Seed everything, then build, prepare and set up the run's DataModule; ``clock`` times
    ``data_prepare`` (a generated database is built here) and ``data_setup`` (records, splits,
    leakage and near-duplicate checks)."""
    clock = clock or PhaseClock()
    L.seed_everything(cfg.seed, workers=True)
    with clock.phase("data_prepare"):
        datamodule = hydra.utils.instantiate(cfg.data, protocol=cfg.protocol)
        datamodule.hash_cache_dir = cfg.paths.cache_dir
        datamodule.prepare_data()
    with clock.phase("data_setup"):
        datamodule.setup(stage)
    return datamodule


def build_trainer(cfg: DictConfig) -> L.Trainer:
    loggers = instantiate_group(cfg.get("logger"))
    log_config_to_wandb(loggers, cfg)
    return hydra.utils.instantiate(
        cfg.trainer,
        callbacks=instantiate_group(cfg.get("callbacks")),
        logger=loggers or False,
    )


def log_config_to_wandb(loggers: list, cfg: DictConfig) -> None:
    """The run's whole resolved config as the W&B run's config (Lightning logs only the model's
    hyperparameters), written when the run starts so that an interrupted run has it too."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))


def close_wandb(failed: bool = False) -> None:
    """Finish the process's W&B run, if any (marked failed after an error), and stop wandb's
    service: the next job of a multirun starts a fresh one, with that job's environment
    (``conf/logger/wandb.yaml`` puts wandb's cache under the run folder)."""
    wandb = sys.modules.get("wandb")  # never imported: no run to close
    if wandb is None:
        return
    if wandb.run is not None:
        wandb.finish(exit_code=1 if failed else 0)
    wandb.teardown()


def reuse_finished_run(cfg: DictConfig) -> dict | None:
    """If a run with this config, this code version and these label and image files already
    finished (``logs/store``, see ``runstore``), point this run's folder at it (``results.json``
    with ``reused_from`` and ``reused_from_commit``), print its summary marked ``REUSED from
    <commit>`` (with what it left out, if it dropped bad inputs) and return its results; else
    None."""
    if not cfg.get("reuse_finished"):
        return None
    entry = find_finished(cfg)
    if entry is None:
        return None
    commit = entry_commit(entry)
    results = dict(entry["results"], reused_from=entry["output_dir"], reused_from_commit=commit)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_results_json(output_dir / "results.json", results)
    log.info(
        "this config already finished with this code and these label and image files in %s "
        "(repeat %s): reusing its results; reuse_finished=false runs it again",
        entry["output_dir"],
        entry.get("repeat"),
    )
    print_summary(results, output_dir)
    dropped = left_out(results)  # also logged by the run store (once per key)
    print(
        f"REUSED from {commit} ({entry['output_dir']})"
        + (f"; {dropped}" if dropped else "")
        + "; reuse_finished=false runs it again"
    )
    return results


def task_wrapper(task: Callable[[DictConfig], dict]) -> Callable[[DictConfig], dict]:
    """Check the config's keys before anything runs (``config_checks``); always say where the
    outputs are and close wandb, so one failed multirun job does not break the others silently.
    A failure's traceback goes to the run's log file; the console gets it once, from
    ``cli.run_command`` (one line for the project's own errors, ``cli.end_single_run``)."""

    @functools.wraps(task)
    def wrapped(cfg: DictConfig) -> dict:
        start = time.time()
        failure = None
        try:
            check_config(cfg)
            return task(cfg)
        except Exception as err:
            failure = err
            log_traceback_to_files(log, "run failed", err)
            raise
        finally:
            log.info("output dir: %s (%.0f s)", cfg.paths.output_dir, time.time() - start)
            close_wandb(failed=failure is not None)
            if failure is not None:
                end_single_run(failure)  # after the lines above, so the error is the last line

    return wrapped
