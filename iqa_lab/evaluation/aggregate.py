"""Summaries over repeats: median, mean, std and IQR of every test metric, with the run count.

``iqa-aggregate DIR [DIR ...]`` (``make aggregate ARGS="DIR …"``) finds every ``results.json``
under the folders, groups the runs that differ only in ``protocol.repeat`` and writes
``aggregate.csv``, ``aggregate.json`` and ``aggregate.md`` into the first folder (or ``--out``).
After a Hydra multirun the ``AggregateRepeats`` callback (``conf/hydra/default.yaml``) does this
for the sweep.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from iqa_lab.cli import VERBOSE_FLAG, VERBOSE_HELP, run_command
from iqa_lab.errors import IQALabError, MissingFileError
from iqa_lab.evaluation.runstore import group_key
from iqa_lab.files import atomic_write_text

log = logging.getLogger(__name__)

STATS = ("n", "median", "mean", "std", "q25", "q75", "iqr")


def load_results(folders) -> list[dict]:
    """Every results.json under ``folders`` (each once)."""
    seen, found = set(), []
    for folder in folders:
        if not Path(folder).is_dir():
            raise MissingFileError(
                f"{folder}: no such folder; give folders that hold runs (e.g. "
                f"logs/train/multiruns/<date>)"
            )
        for path in sorted(Path(folder).rglob("results.json")):
            if path.resolve() not in seen:
                seen.add(path.resolve())
                try:
                    results = json.loads(path.read_text())
                except json.JSONDecodeError as err:
                    raise IQALabError(
                        f"{path}: not valid JSON ({err}); delete it (or its run folder) and "
                        f"run that run again"
                    ) from None
                results["_path"] = str(path)
                found.append(results)
    return found


def describe(values) -> dict[str, float]:
    """n, median, mean, std (ddof=1), quartiles and IQR of the finite values."""
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(values) == 0:
        return {"n": 0, **{s: float("nan") for s in STATS[1:]}}
    q25, q75 = np.percentile(values, [25, 75])
    return {
        "n": int(len(values)),
        "median": float(np.median(values)),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "q25": float(q25),
        "q75": float(q75),
        "iqr": float(q75 - q25),
    }


def _flat(config: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = repr(value)
    return out


def settings(groups: dict[str, list[dict]]) -> dict[str, str]:
    """What sets each group apart from the others (``key=value`` of the config entries that
    differ between groups but not between the repeats of one group, e.g. output folders)."""
    flat = {g: [_flat(r["config"]) for r in members] for g, members in groups.items()}
    keys = set().union(*(f for runs in flat.values() for f in runs)) if flat else set()
    per_run = {k for runs in flat.values() for k in keys if len({f.get(k) for f in runs}) > 1}
    varying = sorted(
        k for k in keys - per_run if len({runs[0].get(k) for runs in flat.values()}) > 1
    )
    return {
        g: ", ".join(f"{k}={runs[0].get(k, 'unset')}" for k in varying) for g, runs in flat.items()
    }


def summarise(runs: list[dict], metrics: list[str] | None = None) -> pd.DataFrame:
    """One row per (group, metric): the statistics over the group's repeats."""
    rows = []
    groups: dict[str, list[dict]] = {}
    for results in runs:
        groups.setdefault(group_key(OmegaConf.create(results["config"])), []).append(results)
    setting = settings(groups)
    for group, members in groups.items():
        # A rerun of one repeat counts once (the newest).
        by_repeat = {}
        for results in sorted(members, key=lambda r: r.get("finished_at", "")):
            by_repeat[results["split"]["repeat"]] = results
        members = list(by_repeat.values())
        first = members[0]
        keys = metrics or sorted(
            {k for r in members for k in r["metrics"] if k.startswith("test/")}
        )
        for key in keys:
            rows.append(
                {
                    "group": group,
                    "setting": setting[group],
                    "data": first["data"]["name"],
                    "model": first["config"].get("model", {}).get("_target_", ""),
                    "protocol": first["protocol"]["name"],
                    "paper_parity": any(r.get("paper_parity") for r in members),
                    "repeats": sorted(int(r["split"]["repeat"]) for r in members),
                    # A group is keyed by config only: say which code computed its repeats.
                    "commits": sorted({str(r.get("git_commit")) for r in members}),
                    "metric": key,
                    **describe([r["metrics"].get(key) for r in members]),
                }
            )
    return pd.DataFrame(rows)


def to_markdown(frame: pd.DataFrame, metrics=("test/srcc", "test/plcc")) -> str:
    lines = [
        "| setting | data | protocol | metric | n | median | mean | std | IQR |",
        "|" + "---|" * 9,
    ]
    for row in frame[frame["metric"].isin(metrics)].itertuples():
        stamp = " (paper-parity)" if row.paper_parity else ""
        lines.append(
            f"| {row.setting or '—'} | {row.data} | {row.protocol}{stamp} | {row.metric} | "
            f"{row.n} | {row.median:.4f} | {row.mean:.4f} | {row.std:.4f} | {row.iqr:.4f} |"
        )
    return "\n".join(lines) + "\n"


def write_aggregate(folders, out: str | Path | None = None) -> pd.DataFrame:
    """Aggregate the runs under ``folders`` into ``out`` (default: the first folder)."""
    frame = summarise(load_results(folders))
    out = Path(out or folders[0])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "aggregate.csv", frame.to_csv(index=False))
    atomic_write_text(out / "aggregate.json", frame.to_json(orient="records", indent=1))
    atomic_write_text(
        out / "aggregate.md", to_markdown(frame) if len(frame) else "no finished runs\n"
    )
    return frame


class AggregateRepeats(Callback):
    """Hydra callback: after a multirun, aggregate its runs into the sweep folder."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        frame = write_aggregate([sweep_dir])
        if len(frame):
            print(f"\naggregate over repeats ({sweep_dir}/aggregate.md):\n" + to_markdown(frame))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="folders searched for results.json")
    parser.add_argument(
        "--out", default=None, help="where aggregate.{csv,json,md} go (default: the first folder)"
    )
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    args = parser.parse_args(argv)
    frame = write_aggregate(args.folders, args.out)
    print(to_markdown(frame) if len(frame) else "no results.json found")


if __name__ == "__main__":
    run_command(main)
