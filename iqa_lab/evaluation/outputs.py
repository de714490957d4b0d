"""A run's outputs: its test predictions joined to their records, the test metrics, results.json,
predictions.csv, the figures and report.md, the run store entry and the printed summary.

``finish_run`` is the one tail every entry point ends with."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from iqa_lab.data.datamodule import IQADataModule
from iqa_lab.data.protocols import PAPER_PARITY
from iqa_lab.evaluation.epoch_metrics import HEADLINE
from iqa_lab.evaluation.metrics import FITTED_PLCC, full_summary, logistic_fit_failures
from iqa_lab.evaluation.report import run_figures, run_report
from iqa_lab.evaluation.results import (
    git_commit,
    machine,
    write_predictions_csv,
    write_results_json,
)
from iqa_lab.evaluation.runstore import record_finished


def test_predictions(model, datamodule: IQADataModule) -> pd.DataFrame:
    """The test predictions the model collected, joined to their records."""
    if model.test_predictions is None:
        raise RuntimeError("the model collected no test predictions; did trainer.test run?")
    rows = datamodule.records.loc[model.test_predictions["index"]].copy()
    rows["prediction"] = model.test_predictions["prediction"]
    rows["mos_std_norm"] = datamodule.normalised_std(rows)
    return rows.reset_index(drop=True)


def per_head_metrics(predictions: pd.DataFrame, compute) -> dict[str, float]:
    """``test/<db>/by_<head>/<metric>`` for databases scored by a head that is not their own
    (StairIQA Table V: one column per training database's regressor)."""
    metrics = {}
    cross = predictions[predictions["db"] != predictions["head"]]
    for (db, head), frame in cross.groupby(["db", "head"], sort=True):
        metrics.update({f"test/{db}/by_{head}/{k}": v for k, v in compute(frame).items()})
    return metrics


def test_metrics(test: pd.DataFrame, evaluation: DictConfig | dict | None) -> dict[str, float]:
    """Every metric of ``evaluation.metrics.full_summary`` on the test predictions, under
    ``test/…`` keys, and per database (``test/<db>/…``: the headline metrics and ``plcc_l4/l5``)
    when the test split mixes databases. ``…/n`` is the number of images each was computed on:
    those actually scored, after any that failed to decode (``data.on_bad=skip``).

    Predictions of a multi-head model carry ``head``: rows scored by their own database's head make
    the metrics above; rows scored by another database's head (a held-out database) give
    ``test/<db>/by_<head>/…`` (StairIQA Table V), and when no database has its own head their
    median over the heads is the headline ``test/…``."""
    options = dict(evaluation or {})

    def compute(frame: pd.DataFrame) -> dict:
        # The outlier ratio compares errors on the normalised scale with the std on that scale.
        std = (
            frame["mos_std_norm"]
            if "mos_std_norm" in frame and frame["mos_std_norm"].notna().all()
            else None
        )
        return {
            **full_summary(frame["prediction"], frame["mos"], mos_std=std, **options),
            "n": len(frame),
        }

    cross, scored = {}, len(test)
    if "head" in test:
        cross = per_head_metrics(
            test, lambda frame: {k: v for k, v in compute(frame).items() if k in HEADLINE + ("n",)}
        )
        scored = len(test) // test["head"].nunique()  # every head scores every test image
        test = test[test["db"] == test["head"]]
    if test.empty:
        return {
            **{
                f"test/{k}": float(
                    np.median([v for key, v in cross.items() if key.endswith(f"/{k}")])
                )
                for k in HEADLINE
            },
            "test/n": scored,
            **cross,
        }
    metrics = {f"test/{k}": v for k, v in compute(test).items()}
    if "db" in test and test["db"].nunique() > 1:
        for db, frame in test.groupby("db"):
            # Per database also the PLCC after the logistic fits: the papers' tables report it.
            metrics.update(
                {
                    f"test/{db}/{k}": v
                    for k, v in compute(frame).items()
                    if k in HEADLINE + FITTED_PLCC + ("n",)
                }
            )
    return {**metrics, **cross}


def without_twins_metrics(
    test: pd.DataFrame, twinned: set[tuple[str, str]], evaluation: DictConfig | dict | None
) -> dict[str, float]:
    """``test_nodup/…``: the test metrics without the test images that have a near-duplicate in
    training (``twinned``: ``(db, image)``); empty when there are none."""
    if not twinned:
        return {}
    has_twin = pd.MultiIndex.from_frame(test[["db", "image"]].astype(str)).isin(list(twinned))
    metrics = test_metrics(test[~has_twin], evaluation)
    return {"test_nodup/" + key.removeprefix("test/"): value for key, value in metrics.items()}


def scored_sizes(datamodule: IQADataModule) -> dict[str, int]:
    """Records each split actually used: its planned size less the records whose image failed to
    decode during the run (``data.on_bad=skip``; setup's screening already left its finds out of
    the split sizes). For the test split this is ``test/n``."""
    records = datamodule.records
    failed = [item for item in datamodule.bad_inputs if item.get("kind") == "decode"]
    sizes = {}
    for split, planned in datamodule.split_sizes().items():
        rows = records[records["split"] == split]
        lost = pd.Series(False, index=rows.index)
        for item in (item for item in failed if item.get("split") == split):
            same = rows["image"].astype(str) == str(item["image"])
            if item.get("db") is not None and "db" in rows:
                same &= rows["db"].astype(str) == str(item["db"])
            lost |= same
        sizes[split] = int(planned - lost.sum())
    return sizes


def write_run_outputs(
    output_dir: str | Path,
    cfg: DictConfig,
    datamodule: IQADataModule,
    predictions: pd.DataFrame,
    extra_metrics: dict,
    wall_s: float,
    trainer: L.Trainer | None = None,
    checkpoint: str | None = None,
    phases_s: dict[str, float] | None = None,
) -> dict:
    """results.json, predictions.csv, the figures and report.md; returns the results dict.
    ``phases_s``: seconds per phase of the run so far (``phases.PhaseClock``).

    A run whose checkpoint was picked on the test set (``selection=test``) is stamped
    ``paper-parity`` in every one of them."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    parity = datamodule.protocol.paper_parity
    test = predictions[predictions["split"] == "test"]
    metrics = test_metrics(test, cfg.get("evaluation"))
    twinned = getattr(datamodule, "test_images_with_training_twin", set())
    metrics.update(without_twins_metrics(test, twinned, cfg.get("evaluation")))
    if "head" in test:  # the figures show each database scored by its own head where it has one
        own = test[test["db"] == test["head"]]
        test = own if len(own) else test[test["head"] == test["head"].iloc[0]]
    metrics.update({k: v for k, v in extra_metrics.items() if k not in metrics})
    synthetic = datamodule.synthetic_labels
    results = {
        "task_name": cfg.get("task_name"),
        "stamp": PAPER_PARITY if parity else None,
        "paper_parity": parity,
        "metrics": metrics,
        # Logistic-fitted metrics left NaN because their fit failed (too few images, constant).
        "logistic_fit_failed": logistic_fit_failures(metrics),
        "metric_scale": "MOS normalised to [0, 1], higher = better (rmse on that scale)",
        "data": {
            "name": datamodule.name,
            "data_dir": str(datamodule.data_dir),
            "synthetic_labels": synthetic,
            "mos_range": list(datamodule.mos_range),
            "lower_better": datamodule.lower_better,
            "flipped": {"dmos_flipped_to_higher_better": datamodule.lower_better},
            "databases": sorted(predictions["db"].unique()) if "db" in predictions else [],
            "split_sizes": datamodule.split_sizes(),  # as planned at setup
            "scored_sizes": scored_sizes(datamodule),  # less the images that failed to decode
        },
        "protocol": OmegaConf.to_container(cfg.protocol, resolve=True),
        "split": {"seed": datamodule.protocol.split_seed, "repeat": datamodule.protocol.repeat},
        "seed": cfg.get("seed"),
        "selection": datamodule.protocol.selection,
        "wall_s": round(wall_s, 2),
        "phases_s": phases_s or {},
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bad_inputs": {"count": len(datamodule.bad_inputs), "list": datamodule.bad_inputs},
        # Records kept with a remark (file-name case resolved, wrong extension).
        "input_notes": getattr(datamodule, "input_notes", []),
        # Near-duplicate pairs found, and those straddling test and training (official splits).
        "near_duplicates": getattr(datamodule, "near_duplicates", None),
        "git_commit": git_commit(),
        "machine": machine(),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "checkpoint": checkpoint,
    }
    if hasattr(datamodule, "mos_ranges"):
        results["data"]["mos_ranges"] = datamodule.mos_ranges
    predictions = predictions.assign(stamp=PAPER_PARITY) if parity else predictions
    write_predictions_csv(output_dir / "predictions.csv", predictions)
    label = "synthetic pseudo-MOS (normalised)" if synthetic else "MOS (normalised)"
    title = f"{cfg.get('task_name', 'run')}: {datamodule.name} test split" + (
        " [paper-parity]" if parity else ""
    )
    figures = run_figures(test, output_dir, title=title, mos_label=label)
    write_results_json(output_dir / "results.json", results)
    run_report(results, figures, output_dir / "report.md")
    _log_figures_to_wandb(trainer, figures)
    return results


def _log_figures_to_wandb(trainer: L.Trainer | None, figures: dict[str, Path]) -> None:
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers if trainer is not None else []:
        if isinstance(logger, WandbLogger):
            for name, path in figures.items():
                logger.log_image(key=f"test/{name}", images=[str(path)])


def print_summary(results: dict, output_dir: str | Path) -> None:
    from rich.console import Console
    from rich.table import Table

    metrics = results["metrics"]
    title = (
        "test metrics"
        + (" — SYNTHETIC labels" if results["data"]["synthetic_labels"] else "")
        + (" — PAPER-PARITY (checkpoint picked on test)" if results["paper_parity"] else "")
    )
    table = Table(title=title)
    keys = ("srcc", "plcc", "krcc", "rmse")
    # Several databases: the pooled row mixes their scales, so each is shown on its own too.
    databases = [
        db for db in results["data"].get("databases") or [] if f"test/{db}/srcc" in metrics
    ]
    if len(databases) > 1:
        table.add_column("test set")
    for key in keys:
        table.add_column(key.upper(), justify="right")
    rows = [("all (pooled)", "test")] + [(db, f"test/{db}") for db in databases]
    for label, prefix in rows if len(databases) > 1 else [(None, "test")]:
        values = [f"{metrics[f'{prefix}/{k}']:.4f}" for k in keys]
        table.add_row(*([label] if label else []), *values)
    console = Console()
    console.print(table)
    if "test_nodup/srcc" in metrics:
        straddling = len((results.get("near_duplicates") or {}).get("straddling", []))
        console.print(
            "without the test images that have a near-duplicate in training ("
            f"{straddling} pairs, results.json near_duplicates): "
            + ", ".join(f"{k.upper()} {metrics[f'test_nodup/{k}']:.4f}" for k in keys)
        )
    sizes = results["data"]["split_sizes"]
    console.print(f"data: {results['data']['name']} ({sizes}), wall time {results['wall_s']:.0f} s")
    console.print(
        f"outputs: {Path(output_dir).resolve()}  (results.json, predictions.csv, "
        f"report.md and its figures)"
    )


def finish_run(
    cfg: DictConfig,
    datamodule: IQADataModule,
    predictions: pd.DataFrame,
    extra_metrics: dict,
    wall_s: float,
    trainer: L.Trainer | None = None,
    checkpoint=None,
    remember: bool = True,
    phases_s: dict[str, float] | None = None,
) -> dict:
    """Write the run's outputs into ``cfg.paths.output_dir``, record it in the run store (unless
    ``remember`` is false) and print the summary; returns the results dict."""
    results = write_run_outputs(
        cfg.paths.output_dir,
        cfg,
        datamodule,
        predictions,
        extra_metrics,
        wall_s=wall_s,
        trainer=trainer,
        checkpoint=checkpoint,
        phases_s=phases_s,
    )
    if remember:  # reruns of the same config then reuse it
        record_finished(cfg, cfg.paths.output_dir, results)
    print_summary(results, cfg.paths.output_dir)
    return results
