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
   command, the git commit of each cell's runs and the machine. Each cell names its resolved
   protocol and checkpoint selection (a row or column may replace the table's protocol), and
   paths under ``paths.data_root`` are written ``<data_root>/…``. Cells that used
   ``selection=test`` are stamped ``paper-parity``.

A run is reused only when its config, the code version and the label files are unchanged
(``runstore``): after a code change every cell runs again. ``--dry-run`` prints the plan (which
repeats run, which are reused and from which commit, which cells are absent) and writes nothing.
A spec's ``model_size: {input_size: [h, w], published: {row: {params_m, gflops}}}`` adds each
row's measured parameters and FLOPs (``models.size``), beside the published ones.
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

from iqa_lab.cli import VERBOSE_FLAG, VERBOSE_HELP, run_command
from iqa_lab.config_checks import check_config
from iqa_lab.evaluation.aggregate import describe
from iqa_lab.evaluation.cell_provenance import (
    describe_protocol,
    describe_selection,
    relative_to_data_root,
)
from iqa_lab.evaluation.report import table_plot
from iqa_lab.evaluation.results import git_commit, machine
from iqa_lab.evaluation.runstore import entry_commit, read_entry, run_key, store_dir
from iqa_lab.files import atomic_write_text
from iqa_lab.models.size import build_without_weights, measure
from iqa_lab.progress import Progress, format_duration

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
    protocol: str = ""  # the resolved protocol, in words (cell_provenance)
    selection: str = ""  # how the tested checkpoint was chosen
    reused: dict[int, str] = field(default_factory=dict)  # finished repeat -> its commit
    commits: list[str] = field(default_factory=list)  # commits of the runs shown


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
    check_config(cfg)  # a bad key stops the table before any run is launched
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
            cell.protocol = describe_protocol(cfg.protocol)
            cell.selection = describe_selection(cfg, cell.entry)
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
                finished = read_entry(store, key)
                if finished is None:
                    cell.missing.append(repeat)
                else:
                    cell.reused[repeat] = entry_commit(finished)
            cell.paper_parity = cfg.protocol.selection == "test"
            cells.append(cell)
    GlobalHydra.instance().clear()
    return cells


def to_launch(cells: list[Cell], store: Path) -> list[Cell]:
    """The cells with a repeat to run, in order; a cell whose missing runs an earlier cell runs
    too (column_overrides: false) is left out. Sets each one's ``missing``."""
    pending, scheduled = [], set()
    for cell in cells:
        if cell.status in NOT_RUN:
            continue
        cell.missing = [r for r, key in enumerate(cell.keys) if read_entry(store, key) is None]
        if any(cell.keys[r] not in scheduled for r in cell.missing):
            pending.append(cell)
            scheduled.update(cell.keys[r] for r in cell.missing)
    return pending


def launch(cell: Cell, spec: dict, sweep_root: Path, heading: str) -> int:
    """Run the cell's missing repeats as one Hydra multirun, printing ``heading`` and the command;
    returns the exit code."""
    slug = plain_value(f"{cell.row}__{cell.column}")  # the cell's folder
    command = [
        sys.executable,
        "-m",
        f"iqa_lab.{cell.entry}",
        "-m",
        *cell.overrides,
        *table_group(spec, cell.overrides),
        f"protocol.repeat={','.join(map(str, cell.missing))}",
        f"hydra.sweep.dir={sweep_root / slug}",
    ]
    print(f"\n{heading}\n  " + shlex.join(command[1:]), flush=True)
    return subprocess.run(command, check=False).returncode


def plain_value(text: str) -> str:
    """``text`` as a value Hydra's override grammar takes (it rejects brackets and spaces)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def table_group(spec: dict, overrides: list[str]) -> list[str]:
    """``group=<table name>``: every run of the table logged in one group (W&B), unless the
    overrides name a group themselves."""
    if any(re.match(r"[+~]*group=", o) for o in overrides):
        return []
    return [f"group={plain_value(spec['name'])}"]


def collect(cell: Cell, store: Path, spec: dict) -> None:
    """Median etc. over the cell's finished repeats, from the run store."""
    runs, commits = [], set()
    for key in cell.keys:
        entry = read_entry(store, key)
        if entry is not None:
            runs.append(entry["results"])
            commits.add(entry_commit(entry))
    cell.commits = sorted(commits)
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
        entries = [read_entry(store, key) for key in cell.keys]
        runs = [entry["results"]["metrics"] for entry in entries if entry is not None]
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
                    "protocol": cell.protocol,
                    "selection": cell.selection,
                    "commits": "; ".join(cell.commits),
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
    if line.status not in ("ok", "partial"):
        return f"{line.status}" + (f": {line.detail}" if line.detail else "")
    text = (
        f"{line.ours:.4f}{_bracket(getattr(line, 'gain', None))} (IQR {line.iqr:.4f}, n={line.n})"
    )
    if line.status == "partial":
        text += f" partial: {line.detail}"
    if line.stamp:
        text += " paper-parity"
    return text


def _short_commit(commit: str) -> str:
    """A commit hash cut to 10 characters (its ``-dirty`` mark kept); other text as it is."""
    match = re.fullmatch(r"([0-9a-f]{40})(-dirty)?", commit)
    return match.group(1)[:10] + (match.group(2) or "") if match else commit


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
        f"- protocol: each cell's resolved protocol and checkpoint selection are in its line "
        f"(the spec's default: `{' '.join(spec.get('protocol', [])) or 'config default'}`, which "
        f"a row or column may replace); {spec['repeats']} repeat(s), ours = median over repeats "
        f"(IQR of the repeats)",
        f"- command: `{header['command']}`",
        f"- rendered by git commit `{header['git_commit']}`, machine: {header['machine']}, "
        f"rendered {header['date']}; each cell's numbers come from the commit(s) in its line",
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
            "| row | column | protocol | selection | ours | published | Δ (ours − pub.) | commit |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for line in frame[frame["metric"] == metric].itertuples():
            pub = (
                f"{line.published:.4f}"
                if line.published is not None and np.isfinite(line.published)
                else "—"
            )
            pub += _bracket(getattr(line, "published_gain", None))
            diff = f"{line.diff:+.4f}" if np.isfinite(line.diff) else "—"
            commits = ", ".join(_short_commit(c) for c in line.commits.split("; ") if c) or "—"
            out.append(
                f"| {line.row} | {line.column} | {line.protocol or '—'} | "
                f"{line.selection or '—'} | {_cell_text(line)} | {pub} | {diff} | {commits} |"
            )
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
        r"\begin{tabular}{lllllllll}",
        r"\hline",
        r"Row & Column & Metric & Protocol & Selection & Ours (median) & IQR & Published & "
        r"$\Delta$ \\",
        r"\hline",
    ]
    for line in frame.itertuples():
        ours = _latex_escape(
            f"{line.ours:.4f}{_bracket(getattr(line, 'gain', None))}"
            if np.isfinite(line.ours)
            else line.status
        )
        if line.stamp:
            ours += r"$^\dagger$"
        iqr = f"{line.iqr:.4f}" if line.iqr is not None and np.isfinite(line.iqr) else "--"
        pub = (
            f"{line.published:.4f}{_bracket(getattr(line, 'published_gain', None))}"
            if line.published is not None and np.isfinite(line.published)
            else "--"
        )
        diff = f"{line.diff:+.4f}" if np.isfinite(line.diff) else "--"
        escaped = [
            _latex_escape(str(v))
            for v in (line.row, line.column, line.metric, line.protocol, line.selection)
        ]
        lines.append(" & ".join([*escaped, ours, iqr, pub, diff]) + r" \\")
    lines += [
        r"\hline",
        r"\end{tabular}",
        f"% {_latex_escape(spec['title'])}; source: {_latex_escape(spec['source'])}",
        r"% $^\dagger$ paper-parity: checkpoint picked on the test split",
        *(f"% {_latex_escape(text[2:])}" for text in plcc_lines(spec)),
    ]
    return "\n".join(lines) + "\n"


def plan_text(cells: list[Cell], spec: dict) -> str:
    """What ``reproduce`` would do, cell by cell (``--dry-run``)."""
    lines = [f"plan of {spec['name']} ({spec['repeats']} repeat(s) per cell):"]
    for cell in cells:
        head = f"- {cell.row} × {cell.column}: "
        ran = f" [{cell.protocol}; {cell.selection}]" if cell.protocol else ""
        if cell.status in ("absent", "unavailable"):
            lines.append(head + f"{cell.status}: {cell.detail}{ran}")
            continue
        parts = []
        if cell.missing:
            parts.append(f"run repeats {cell.missing}")
        by_commit: dict[str, list[int]] = {}
        for repeat, commit in sorted(cell.reused.items()):
            by_commit.setdefault(commit, []).append(repeat)
        parts += [f"reuse repeats {r} from {c}" for c, r in by_commit.items()]
        lines.append(head + "; ".join(parts) + ran)
    runs = sum(len(c.missing) for c in cells if c.status not in ("absent", "unavailable"))
    lines.append(f"{runs} run(s) would be launched (cells sharing one run count it for each)")
    return "\n".join(lines) + "\n"


def model_sizes(spec: dict, cells: list[Cell]) -> dict[str, dict]:
    """Row -> parameters and FLOPs of the row's model at ``model_size.input_size`` (built without
    pretrained weights), for a spec with ``model_size``; rows that do not train are left out."""
    options = spec.get("model_size")
    if not options:
        return {}
    sizes = {}
    for cell in cells:
        if cell.row in sizes or cell.entry != "train" or cell.status == "unavailable":
            continue
        cfg = compose_cell(cell.entry, cell.overrides)
        data = cfg.data
        heads = list(data.databases) if "databases" in data else [data.name]
        sizes[cell.row] = measure(build_without_weights(cfg.model, heads), options["input_size"])
    GlobalHydra.instance().clear()
    return sizes


def render_model_sizes(sizes: dict[str, dict], spec: dict) -> str:
    """The Markdown section of measured (and published) parameters and FLOPs per row."""
    if not sizes:
        return ""
    options = spec["model_size"]
    published = options.get("published") or {}
    height, width = options["input_size"]
    out = [
        "",
        f"## model size (one {height}×{width} image, weights random: size only)",
        "",
        "FLOPs counted by torch.utils.flop_counter (a multiply-add = 2 FLOPs; convolutions and "
        "matrix products only); GMACs = GFLOPs / 2, the convention of thop-style counters.",
    ]
    if options.get("note"):
        out += ["", options["note"].strip()]
    out += [
        "",
        "| row | params (M) | GFLOPs | GMACs | published params (M) | published GFLOPs "
        "(as printed) |",
        "|---|---|---|---|---|---|",
    ]
    for row, size in sizes.items():
        pub = published.get(row) or {}
        pub_params = f"{pub['params_m']:.3f}" if "params_m" in pub else "—"
        pub_flops = f"{pub['gflops']:.3f}" if "gflops" in pub else "—"
        out.append(
            f"| {row} | {size['params'] / 1e6:.3f} | {size['flops'] / 1e9:.3f} | "
            f"{size['macs'] / 1e9:.3f} | {pub_params} | {pub_flops} |"
        )
    return "\n".join(out) + "\n"


def render(
    cells: list[Cell],
    spec: dict,
    out_dir: Path,
    command: str,
    data_root: str | None = None,
    sizes: dict[str, dict] | None = None,
    baseline: dict | None = None,
    baseline_cells: list[Cell] = (),
) -> pd.DataFrame:
    """Write table.{csv,md,tex}, provenance.json and table.png into ``out_dir``; paths under
    ``data_root`` are written ``<data_root>/…``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = cell_frame(cells, spec, baseline)

    def write(name: str, text: str) -> None:
        atomic_write_text(out_dir / name, relative_to_data_root(text, data_root))

    info = machine()
    header = {
        "command": command,
        "git_commit": git_commit(),
        "machine": f"{info['cpus']} CPUs, {info['gpu'] or 'no GPU'}, torch {info['torch']}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    write("table.csv", frame.to_csv(index=False))
    write("table.md", render_markdown(frame, spec, header) + render_model_sizes(sizes or {}, spec))
    write("table.tex", render_latex(frame, spec))
    write(
        "provenance.json",
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
                        "protocol": c.protocol,
                        "selection": c.selection,
                        "commits": c.commits,
                        "run_keys": c.keys,
                    }
                    for c in [*cells, *baseline_cells]
                ],
                "model_size": sizes or {},
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
    data_root = str(cfg.paths.data_root)
    GlobalHydra.instance().clear()
    sweep_root = log_dir / "tables" / spec["name"] / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    if dry_run:
        print(relative_to_data_root(plan_text(cells + baseline_cells, spec), data_root))
        return cell_frame(cells, spec), 0
    launched = 0
    pending = to_launch(cells + baseline_cells, store)
    # Printed whatever the terminal: one line per cell between the runs' own output.
    total = len({cell.keys[r] for cell in pending for r in cell.missing})
    runs = Progress(total, "runs", "runs", enabled=False)
    for k, cell in enumerate(pending, 1):
        # Cells that share a run (column_overrides: false) find it finished by an earlier cell.
        cell.missing = [r for r, key in enumerate(cell.keys) if read_entry(store, key) is None]
        if not cell.missing:
            continue
        launched += len(cell.missing)
        heading = (
            f"[{spec['name']}] cell {k} of {len(pending)}: {cell.row} × {cell.column}: "
            f"running repeats {cell.missing} — {runs.status()}"
        )
        if launch(cell, spec, sweep_root, heading) != 0:
            cell.status, cell.detail = "failed", f"multirun failed; logs in {sweep_root}"
        runs.advance(len(cell.missing))
    runs.close()
    for cell in cells:
        collect(cell, store, spec)
    baseline = collect_gains(baseline_cells, store, spec)
    command = (
        "make reproduce-table TABLE="
        + spec["name"]
        + (" ARGS=" + shlex.quote(" ".join(extra)) if extra else "")
    )
    out_dir = Path(results_dir or configured["results_dir"]) / spec["name"]
    frame = render(
        cells,
        spec,
        out_dir,
        command,
        data_root,
        model_sizes(spec, cells),
        baseline,
        baseline_cells,
    )
    print("\n" + (out_dir / "table.md").read_text())
    print(f"launched {launched} run(s) in {format_duration(runs.elapsed)}; rendered into {out_dir}")
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
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print which repeats would run, which are reused (from which commit) and which "
        "cells are absent; launch and write nothing",
    )
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    args = parser.parse_intermixed_args(argv)  # options may follow the overrides
    frame, _ = reproduce(
        args.table, args.overrides, args.results_dir, args.dry_run, args.tables_dir
    )
    failed = frame[frame["status"] == "failed"]
    sys.exit(1 if len(failed) else 0)


if __name__ == "__main__":
    run_command(main)
