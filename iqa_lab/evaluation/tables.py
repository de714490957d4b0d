"""``iqa-table <name>`` (``make reproduce-table TABLE=<name>``): every cell of a paper table, ours
beside theirs.

A spec ``<paths.tables_dir>/<name>.yaml`` (``experiments/tables/`` of the project, see
``conf/paths``) holds ``title``, ``source`` (paper + table number), ``protocol`` (overrides),
``repeats``, ``metrics``, ``base`` (overrides of every cell), ``rows`` and ``columns`` (label →
overrides, optionally ``{overrides: [...], entry: eval, base: false}``; ``base: false`` leaves the
table's ``base`` out of that row's / column's cells, e.g. a classical-metric row of a table whose
base sets training options; a row's ``columns: [...]`` limits it to those columns, e.g. a
full-reference metric to databases with references; a row's ``column_overrides: false`` makes one
run serve all its columns, each column then naming the database whose metrics it shows
(``test/srcc`` is read as ``test/<database>/srcc``), e.g. one IMDT run over six databases) and
``published`` (row → column → {metric: value}); a published PLCC needs ``plcc_convention``
(``resolve_published_plcc``). A row ``{published_only: true, note: ...}`` is a method of the
paper's table that iqa_lab does not implement: its published values, no run. ``gains`` adds
bracketed gains over one baseline run per column (``gain_cells``). A metric may name its cell:
``{row}`` and ``{column}`` are replaced by the labels, or by their entry in the spec's ``names``
(label → database name), e.g. ``test/{column}/srcc`` or ``test/{row}/by_{column}/srcc``. For
each cell the driver

1. composes the cell's config for every repeat and looks its run up in the run store
   (``logs/store``, see ``runstore``): finished repeats are not run again;
2. says "absent" for cells whose database folder is not here (nothing is left blank);
3. launches the missing repeats of a cell as one Hydra multirun (``python -m iqa_lab.train -m …
   protocol.repeat=0,1,…``), in a subprocess, so every run is an ordinary run with its own outputs;
4. aggregates the median (and n, IQR) of each metric over the repeats and renders Markdown, CSV
   and LaTeX into ``<paths.results_dir>/<name>/`` with the published value, the difference, the
   command, the git commit and the machine. Cells that used ``selection=test`` are stamped
   ``paper-parity``.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from hydra import compose, initialize
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from iqa_lab.evaluation.aggregate import describe
from iqa_lab.evaluation.report import table_plot
from iqa_lab.evaluation.results import git_commit, machine
from iqa_lab.evaluation.runstore import run_key, store_dir
from iqa_lab.files import atomic_write_text

SYNTHETIC_TARGET = "iqa_lab.data.synthetic.SyntheticDataModule"


@dataclass
class Cell:
    row: str
    column: str
    overrides: list[str]
    entry: str = "train"
    status: str = "pending"  # ok | absent | failed | partial
    detail: str = ""
    keys: list[str] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    values: dict = field(default_factory=dict)  # metric -> describe() dict
    paper_parity: bool = False


def _as_overrides(value) -> tuple[list[str], str]:
    if isinstance(value, dict):
        return list(value.get("overrides", [])), value.get("entry", "train")
    return list(value or []), "train"


def _uses_base(value) -> bool:
    return not (isinstance(value, dict) and value.get("base") is False)


def _uses_columns(value) -> bool:
    return not (isinstance(value, dict) and value.get("column_overrides") is False)


# Cells that launch nothing: no data here, no config, or a method only the paper ran.
NOT_RUN = ("absent", "unavailable", "published-only")


def _published_only(value) -> bool:
    return isinstance(value, dict) and value.get("published_only") is True


def published_only_cells(spec: dict, row: str) -> list[Cell]:
    """A row of the paper's table for a method iqa_lab does not implement: its published values,
    no run (``{published_only: true, note: ...}``)."""
    note = spec["rows"][row].get("note", "")
    detail = "not implemented in iqa_lab: published value only, nothing run" + (
        f" ({note})" if note else ""
    )
    return [
        Cell(row, column, [], status="published-only", detail=detail) for column in spec["columns"]
    ]


def metric_key(metric: str, spec: dict, row: str, column: str) -> str:
    """The results key of ``metric`` in the cell (row, column): placeholders filled in; in a row
    whose one run serves every column (``column_overrides: false``), ``test/srcc`` reads the
    column's database, ``test/<database>/srcc``."""
    names = spec.get("names") or {}
    if "{" in metric:
        return metric.format(row=names.get(row, row), column=names.get(column, column))
    if not _uses_columns(spec["rows"].get(row)) and "/" in metric:
        stage, rest = metric.split("/", 1)
        return f"{stage}/{names.get(column, column)}/{rest}"
    return metric


def load_spec(name_or_path: str, tables_dir: str | Path | None = None) -> dict:
    """The spec at a path, or the one named so in ``tables_dir`` (default: ``paths.tables_dir``)."""
    path = Path(name_or_path)
    if not path.suffix:
        tables_dir = Path(tables_dir or configured_paths()["tables_dir"])
        path = tables_dir / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise SystemExit(f"no table spec {path}; known tables: {known}")
    spec = yaml.safe_load(path.read_text())
    for key in ("title", "source", "repeats", "metrics", "rows", "columns"):
        if key not in spec:
            raise SystemExit(f"{path}: the table spec lacks '{key}'")
    spec["name"] = path.stem
    resolve_published_plcc(spec, path)
    return spec


PLCC_METRICS = {
    "plcc": "raw PLCC (no mapping)",
    "plcc_l4": "PLCC after the 4-parameter logistic fit",
    "plcc_l5": "PLCC after the 5-parameter logistic fit",
}


def plcc_convention(spec: dict, row: str) -> dict | None:
    """The ``{metric, citation}`` saying which PLCC the row's published values are: the row's
    entry of ``plcc_convention``, else its ``default``."""
    conventions = spec.get("plcc_convention") or {}
    return conventions.get(row, conventions.get("default"))


def resolve_published_plcc(spec: dict, path: Path) -> None:
    """Refuse a published PLCC whose convention is not stated; key each one by its exact metric.

    A published PLCC may be raw or after a 4- or 5-parameter logistic fit, and the difference
    (~0.01) is as large as the differences a table shows. So every row with a published PLCC needs
    ``plcc_convention`` (for the row, or ``default``): ``{metric: plcc | plcc_l4 | plcc_l5,
    citation: where the paper or its code says so}``; its published ``plcc`` is then read as that
    metric (compared only with ``test/<metric>``), which ``metrics`` must list."""
    fix = (
        "state it: plcc_convention: {default (or the row): {metric: plcc_l4 | plcc_l5 | plcc, "
        "citation: where the paper or its official code says which}}"
    )
    conventions = spec.get("plcc_convention") or {}
    for key, convention in conventions.items():
        if not isinstance(convention, dict) or convention.get("metric") not in PLCC_METRICS:
            raise SystemExit(
                f"{path}: plcc_convention '{key}' must name its metric, one of "
                f"{sorted(PLCC_METRICS)}; {fix}"
            )
        if not str(convention.get("citation") or "").strip():
            raise SystemExit(f"{path}: plcc_convention '{key}' lacks a citation; {fix}")
    listed = {metric.rsplit("/", 1)[-1] for metric in spec["metrics"]}
    for row, columns in (spec.get("published") or {}).items():
        for column, values in (columns or {}).items():
            if not isinstance(values, dict):  # a bare number is the value of the first metric
                values = {spec["metrics"][0]: values}
                if values and spec["metrics"][0].rsplit("/", 1)[-1] not in PLCC_METRICS:
                    continue
            resolved = {}
            for key, value in values.items():
                name = key.rsplit("/", 1)[-1]
                if name not in PLCC_METRICS:
                    resolved[key] = value
                    continue
                convention = plcc_convention(spec, row)
                if convention is None:
                    raise SystemExit(
                        f"{path}: the published PLCC of {row} × {column} does not say whether it "
                        f"is raw or after a logistic fit; {fix}"
                    )
                if name != "plcc" and name != convention["metric"]:
                    raise SystemExit(
                        f"{path}: {row} × {column} publishes '{key}' but plcc_convention says "
                        f"'{convention['metric']}'; make them agree"
                    )
                if convention["metric"] not in listed:
                    raise SystemExit(
                        f"{path}: the published PLCC of {row} is {convention['metric']} but "
                        f"'metrics' lists no test/{convention['metric']} to compare it with; "
                        f"add it"
                    )
                resolved[convention["metric"]] = value
            spec["published"][row][column] = resolved


def compose_cell(entry: str, overrides: list[str]) -> DictConfig:
    """The config a run with these overrides would see (Hydra's resolvers included)."""
    GlobalHydra.instance().clear()
    with initialize(config_path="../../conf", version_base="1.3"):
        cfg = compose(entry, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def configured_paths(overrides: list[str] | None = None) -> dict[str, Path]:
    """``tables_dir`` and ``results_dir`` of ``conf/paths`` under the ``paths.…`` overrides among
    ``overrides`` (the others may need a table's base to compose)."""
    own = [o for o in overrides or [] if re.match(r"[+~]*paths[.=]", o)]
    paths = compose_cell("train", own).paths
    configured = {key: Path(paths[key]) for key in ("tables_dir", "results_dir")}
    GlobalHydra.instance().clear()
    return configured


def data_absent(data: DictConfig) -> str | None:
    """Why the cell's database cannot be read here, or None when it can."""
    if "databases" in data:
        reasons = [data_absent(member) for member in data.databases.values()]
        return "; ".join(r for r in reasons if r) or None
    if data.get("_target_") == SYNTHETIC_TARGET:
        return None
    folder = Path(str(data.get("data_dir")))
    return None if folder.is_dir() else f"database absent: {folder}"


def plan(spec: dict, extra: list[str]) -> list[Cell]:
    """Every cell with its finished and missing repeats."""
    cells = []
    for row, row_value in spec["rows"].items():
        if _published_only(row_value):
            cells += published_only_cells(spec, row)
            continue
        row_overrides, entry = _as_overrides(row_value)
        for column, col_value in spec["columns"].items():
            col_overrides, col_entry = _as_overrides(col_value)
            # A row or column that names its own protocol replaces the table's.
            own_protocol = any(o.startswith("protocol=") for o in row_overrides + col_overrides)
            base = spec.get("base", []) if _uses_base(row_value) and _uses_base(col_value) else []
            if not _uses_columns(row_value):
                col_overrides = []
            overrides = (
                list(base)
                + ([] if own_protocol else list(spec.get("protocol", [])))
                + row_overrides
                + col_overrides
                + list(extra)
            )
            cell = Cell(row, column, overrides, entry=col_entry if col_entry != "train" else entry)
            only = row_value.get("columns") if isinstance(row_value, dict) else None
            if only is not None and column not in only:
                cell.status, cell.detail = "unavailable", f"row measured only in {list(only)}"
                cells.append(cell)
                continue
            try:
                cfg = compose_cell(cell.entry, overrides)
            except Exception as err:  # a config this checkout cannot compose is a cell, not a crash
                cell.status, cell.detail = (
                    "unavailable",
                    f"config does not compose: {str(err).splitlines()[0]}",
                )
                cells.append(cell)
                continue
            absent = data_absent(cfg.data)
            if absent:
                cell.status, cell.detail = "absent", absent
                cells.append(cell)
                continue
            store = store_dir(cfg)
            for repeat in range(int(spec["repeats"])):
                cfg_r = compose_cell(cell.entry, overrides + [f"protocol.repeat={repeat}"])
                key = run_key(cfg_r)
                cell.keys.append(key)
                if not (store / f"{key}.json").is_file():
                    cell.missing.append(repeat)
            cell.paper_parity = cfg.protocol.selection == "test"
            cells.append(cell)
    GlobalHydra.instance().clear()
    return cells


def launch(cell: Cell, spec: dict, sweep_root: Path) -> int:
    """Run the cell's missing repeats as one Hydra multirun; returns the exit code."""
    # Hydra's override grammar rejects brackets and spaces in a value: keep a plain folder name.
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{cell.row}__{cell.column}").strip("_")
    command = [
        sys.executable,
        "-m",
        f"iqa_lab.{cell.entry}",
        "-m",
        *cell.overrides,
        f"protocol.repeat={','.join(map(str, cell.missing))}",
        f"hydra.sweep.dir={sweep_root / slug}",
    ]
    print(
        f"\n[{spec['name']}] {cell.row} × {cell.column}: running repeats {cell.missing}\n  "
        + shlex.join(command[1:]),
        flush=True,
    )
    return subprocess.run(command, check=False).returncode


def collect(cell: Cell, store: Path, spec: dict) -> None:
    """Median etc. over the cell's finished repeats, from the run store."""
    runs = []
    for key in cell.keys:
        path = store / f"{key}.json"
        if path.is_file():
            runs.append(json.loads(path.read_text())["results"])
    cell.values = {
        m: describe([r["metrics"].get(metric_key(m, spec, cell.row, cell.column)) for r in runs])
        for m in spec["metrics"]
    }
    cell.paper_parity = cell.paper_parity or any(r.get("paper_parity") for r in runs)
    if cell.status in NOT_RUN:
        return
    if len(runs) == len(cell.keys):
        cell.status = "ok"
    elif runs:
        cell.status, cell.detail = "partial", f"{len(runs)} of {len(cell.keys)} repeats finished"
    else:
        cell.status = "failed" if cell.status == "failed" else "missing"
        cell.detail = cell.detail or "no repeat finished (see the sweep logs)"


GAIN_BASELINE = "gain baseline"


def gain_cells(spec: dict, extra: list[str]) -> list[Cell]:
    """The runs behind a table's bracketed gains (StairIQA Table V: each cell's gain over the
    model trained on the column's database alone and tested on the row's database).

    ``gains: {label, metric, columns, published}``: ``columns`` gives, per column, the overrides
    of one run that serves every row of that column (e.g. ``protocol=cross`` with
    ``train_dbs=[<column>]`` and every other database as ``test_dbs``); ``metric`` names the key
    it is read from (``{row}``/``{column}`` filled in as for ``metrics``); the bracket is our
    median minus that run's median, beside the paper's ``published`` one."""
    gains = spec.get("gains")
    if not gains:
        return []
    baseline = {
        "rows": {GAIN_BASELINE: {"overrides": [], "base": False}},
        "columns": gains["columns"],
        "repeats": spec["repeats"],
    }
    return plan(baseline, extra)


def collect_gains(cells: list[Cell], store: Path, spec: dict) -> dict[tuple[str, str], float]:
    """(row, column) → the median of ``gains.metric`` over the baseline runs of that column."""
    names, metric = spec.get("names") or {}, spec["gains"]["metric"] if cells else ""
    baseline = {}
    for cell in cells:
        runs = [
            json.loads((store / f"{key}.json").read_text())["results"]["metrics"]
            for key in cell.keys
            if (store / f"{key}.json").is_file()
        ]
        for row in spec["rows"]:
            key = metric.format(row=names.get(row, row), column=names.get(cell.column, cell.column))
            baseline[(row, cell.column)] = describe([r.get(key) for r in runs])["median"]
    return baseline


def _published_gain(spec: dict, row: str, column: str) -> float | None:
    value = ((spec.get("gains") or {}).get("published") or {}).get(row, {}).get(column)
    return float(value) if isinstance(value, (int, float)) else None


def _published(spec: dict, row: str, column: str, metric: str) -> float | None:
    value = (spec.get("published") or {}).get(row, {}).get(column)
    if isinstance(value, dict):
        value = value.get(metric, value.get(metric.split("/")[-1]))
    return float(value) if isinstance(value, (int, float)) else None


def cell_frame(cells: list[Cell], spec: dict, baseline: dict | None = None) -> pd.DataFrame:
    """Long format: one line per (row, column, metric); with ``gains``, the first metric's lines
    also carry ``gain`` (ours − the ``baseline`` median) and ``published_gain``."""
    lines = []
    for cell in cells:
        for metric in spec["metrics"]:
            stats = cell.values.get(metric, {})
            ours = (
                stats.get("median", float("nan"))
                if cell.status in ("ok", "partial")
                else float("nan")
            )
            published = _published(spec, cell.row, cell.column, metric)
            lines.append(
                {
                    "row": cell.row,
                    "column": cell.column,
                    "metric": metric,
                    "ours": ours,
                    "n": stats.get("n", 0),
                    "iqr": stats.get("iqr"),
                    "published": published,
                    "diff": ours - published if published is not None else float("nan"),
                    "status": cell.status,
                    "detail": cell.detail,
                    "stamp": "paper-parity" if cell.paper_parity else "",
                }
            )
            if spec.get("gains") and metric == spec["metrics"][0]:
                reference = (baseline or {}).get((cell.row, cell.column), float("nan"))
                lines[-1]["gain"] = ours - reference
                lines[-1]["published_gain"] = _published_gain(spec, cell.row, cell.column)
    return pd.DataFrame(lines)


def _bracket(value) -> str:
    """`` (+0.0123)`` for a finite gain, else nothing."""
    return f" ({value:+.4f})" if value is not None and np.isfinite(value) else ""


def _cell_text(line) -> str:
    if line.status in NOT_RUN + ("missing", "failed"):
        return f"{line.status}" + (f": {line.detail}" if line.detail else "")
    text = f"{line.ours:.4f}{_bracket(getattr(line, 'gain', None))} (n={line.n})"
    if line.status == "partial":
        text += f" partial: {line.detail}"
    if line.stamp:
        text += " paper-parity"
    return text


def plcc_lines(spec: dict) -> list[str]:
    """Which PLCC each row's published values are, and where the paper or its code says so."""
    conventions = spec.get("plcc_convention") or {}
    return [
        f"- published PLCC of {'every other row' if key == 'default' else key}: "
        f"`{value['metric']}` ({PLCC_METRICS[value['metric']]}); {value['citation'].strip()}"
        for key, value in conventions.items()
    ]


def render_markdown(frame: pd.DataFrame, spec: dict, header: dict) -> str:
    out = [
        f"# {spec['title']}",
        "",
        f"- source of the published numbers: {spec['source']}",
        f"- protocol: `{' '.join(spec.get('protocol', [])) or 'config default'}`, "
        f"{spec['repeats']} repeat(s), ours = median over repeats",
        f"- command: `{header['command']}`",
        f"- git commit `{header['git_commit']}`, machine: {header['machine']}, "
        f"rendered {header['date']}",
    ]
    if spec.get("note"):
        out.append(f"- note: {spec['note'].strip()}")
    out += plcc_lines(spec)
    if spec.get("gains"):
        out.append(f"- (bracket): {spec['gains']['label'].strip()}")
    if any(_published_only(value) for value in spec["rows"].values()):
        out.append(
            "- rows marked *published only*: methods iqa_lab does not implement; nothing ran"
        )
    for metric in spec["metrics"]:
        out += [
            "",
            f"## {metric}",
            "",
            "| row | column | ours | published | Δ (ours − pub.) |",
            "|---|---|---|---|---|",
        ]
        for line in frame[frame["metric"] == metric].itertuples():
            pub = (
                f"{line.published:.4f}"
                if line.published is not None and np.isfinite(line.published)
                else "—"
            )
            pub += _bracket(getattr(line, "published_gain", None))
            diff = f"{line.diff:+.4f}" if np.isfinite(line.diff) else "—"
            out.append(f"| {line.row} | {line.column} | {_cell_text(line)} | {pub} | {diff} |")
    return "\n".join(out) + "\n"


def _latex_escape(text: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("%", r"\%"),
        ("&", r"\&"),
        ("#", r"\#"),
    ):
        text = text.replace(a, b)
    return text


def render_latex(frame: pd.DataFrame, spec: dict) -> str:
    lines = [
        r"\begin{tabular}{llllll}",
        r"\hline",
        r"Row & Column & Metric & Ours (median) & Published & $\Delta$ \\",
        r"\hline",
    ]
    for line in frame.itertuples():
        ours = (
            f"{line.ours:.4f}{_bracket(getattr(line, 'gain', None))}"
            if np.isfinite(line.ours)
            else line.status
        )
        if line.stamp:
            ours += r"$^\dagger$"
        pub = (
            f"{line.published:.4f}{_bracket(getattr(line, 'published_gain', None))}"
            if line.published is not None and np.isfinite(line.published)
            else "--"
        )
        diff = f"{line.diff:+.4f}" if np.isfinite(line.diff) else "--"
        lines.append(
            " & ".join(
                _latex_escape(str(v)) for v in (line.row, line.column, line.metric, ours, pub, diff)
            )
            + r" \\"
        )
    lines += [
        r"\hline",
        r"\end{tabular}",
        f"% {_latex_escape(spec['title'])}; source: {_latex_escape(spec['source'])}",
        r"% $^\dagger$ paper-parity: checkpoint picked on the test split",
        *(f"% {_latex_escape(text[2:])}" for text in plcc_lines(spec)),
    ]
    return "\n".join(lines) + "\n"


def render(
    cells: list[Cell],
    spec: dict,
    out_dir: Path,
    command: str,
    baseline: dict | None = None,
    baseline_cells: list[Cell] = (),
) -> pd.DataFrame:
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = cell_frame(cells, spec, baseline)
    info = machine()
    header = {
        "command": command,
        "git_commit": git_commit(),
        "machine": f"{info['cpus']} CPUs, {info['gpu'] or 'no GPU'}, torch {info['torch']}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    atomic_write_text(out_dir / "table.csv", frame.to_csv(index=False))
    atomic_write_text(out_dir / "table.md", render_markdown(frame, spec, header))
    atomic_write_text(out_dir / "table.tex", render_latex(frame, spec))
    atomic_write_text(
        out_dir / "provenance.json",
        json.dumps(
            {
                **header,
                "spec": spec,
                "cells": [
                    {
                        "row": c.row,
                        "column": c.column,
                        "overrides": c.overrides,
                        "entry": c.entry,
                        "status": c.status,
                        "run_keys": c.keys,
                    }
                    for c in [*cells, *baseline_cells]
                ],
            },
            indent=1,
        ),
    )
    plotted = frame[np.isfinite(frame["ours"].astype(float)) & frame["published"].notna()]
    if len(plotted):
        metric = spec["metrics"][0]
        table_plot(
            plotted[plotted["metric"] == metric], out_dir / "table.png", spec["title"], metric
        )
    return frame


def reproduce(
    name: str,
    extra: list[str] | None = None,
    results_dir: str | Path | None = None,
    dry_run: bool = False,
    tables_dir: str | Path | None = None,
) -> tuple[pd.DataFrame, int]:
    """Plan, launch what is missing, aggregate and render; returns (table, runs launched).
    ``tables_dir`` and ``results_dir`` default to ``paths.tables_dir`` and ``paths.results_dir``
    (``extra`` may set them)."""
    extra = list(extra or [])
    configured = configured_paths(extra)
    spec = load_spec(name, tables_dir or configured["tables_dir"])
    cells = plan(spec, extra)
    baseline_cells = gain_cells(spec, extra)
    cfg = compose_cell("train", list(spec.get("base", [])) + extra)
    store, log_dir = store_dir(cfg), Path(cfg.paths.log_dir)
    GlobalHydra.instance().clear()
    sweep_root = log_dir / "tables" / spec["name"] / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    launched = 0
    for cell in cells + baseline_cells:
        # Cells that share a run (column_overrides: false) find it finished by an earlier cell.
        cell.missing = [
            r for r, key in enumerate(cell.keys) if not (store / f"{key}.json").is_file()
        ]
        if cell.status in NOT_RUN or not cell.missing or dry_run:
            continue
        launched += len(cell.missing)
        if launch(cell, spec, sweep_root) != 0:
            cell.status, cell.detail = "failed", f"multirun failed; logs in {sweep_root}"
    for cell in cells:
        collect(cell, store, spec)
    baseline = collect_gains(baseline_cells, store, spec)
    command = (
        "make reproduce-table TABLE="
        + spec["name"]
        + (" ARGS=" + shlex.quote(" ".join(extra)) if extra else "")
    )
    out_dir = Path(results_dir or configured["results_dir"]) / spec["name"]
    frame = render(cells, spec, out_dir, command, baseline, baseline_cells)
    print("\n" + (out_dir / "table.md").read_text())
    print(f"launched {launched} run(s); rendered into {out_dir}")
    return frame, launched


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="Reproduce a paper table: run its missing cells, render ours beside the "
        "published values. Runs and the run store go under logs/ of the folder you "
        "launch from."
    )
    parser.add_argument("table", help="a spec's name in the tables folder, or a path to a spec")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides added to every cell")
    parser.add_argument(
        "--tables-dir",
        default=None,
        help="where named specs are (default: paths.tables_dir, experiments/tables of the project)",
    )
    parser.add_argument(
        "--results-dir",
        default=None,
        help="where tables render (default: paths.results_dir, experiments/results of the project)",
    )
    parser.add_argument("--dry-run", action="store_true", help="plan and render, launch nothing")
    args = parser.parse_intermixed_args(argv)  # options may follow the overrides
    frame, _ = reproduce(
        args.table, args.overrides, args.results_dir, args.dry_run, args.tables_dir
    )
    failed = frame[frame["status"] == "failed"]
    sys.exit(1 if len(failed) else 0)


if __name__ == "__main__":
    main()
