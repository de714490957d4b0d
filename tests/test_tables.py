"""Repeats, the aggregator and `reproduce-table` end to end on a tiny synthetic table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from iqa_lab import progress
from iqa_lab.evaluation import tables
from iqa_lab.evaluation.aggregate import describe, write_aggregate
from iqa_lab.evaluation.tables import reproduce
from iqa_lab.train import train
from tests.conftest import TINY_DATA

TINY_TRAINING = ["trainer.max_epochs=1", "callbacks.early_stopping=null"]
TINY_PAIR = [
    f"data.databases.{db}.{key}"
    for db in ("synth_a", "synth_b")
    for key in (
        "photos=[astronaut,coffee,camera,china]"
        if db == "synth_a"
        else "photos=[moon,coins,retina,flower]",
        "crops_per_photo=1",
        "crop_size=64",
        "levels=[1,5]",
        "distortions=[gaussian_blur,white_noise,jpeg]",
    )
]


def test_describe_matches_numpy():
    values = [0.5, 0.7, 0.9, 0.6, float("nan")]
    stats = describe(values)
    finite = np.array(values[:4])
    assert stats["n"] == 4
    assert stats["median"] == pytest.approx(np.median(finite))
    assert stats["std"] == pytest.approx(np.std(finite, ddof=1))
    assert stats["iqr"] == pytest.approx(np.subtract(*np.percentile(finite, [75, 25])))


def test_repeats_are_resumable_and_aggregated(make_cfg, tmp_path):
    results = []
    for repeat in (0, 1):
        cfg = make_cfg("train", TINY_TRAINING + [f"protocol.repeat={repeat}"])
        cfg.paths.output_dir = str(tmp_path / f"sweep/{repeat}")
        cfg.paths.log_dir = str(tmp_path / "logs")
        results.append(train(cfg))
    # The same config again is not rerun: its results come back from the store.
    again = make_cfg("train", TINY_TRAINING + ["protocol.repeat=1"])
    again.paths.output_dir = str(tmp_path / "sweep/again")
    again.paths.log_dir = str(tmp_path / "logs")
    metrics = train(again)
    reused = json.loads((tmp_path / "sweep/again/results.json").read_text())
    assert reused["reused_from"].endswith("sweep/1")
    assert metrics["test/srcc"] == results[1]["test/srcc"]
    frame = write_aggregate([tmp_path / "sweep"])
    srcc = frame[frame["metric"] == "test/srcc"].iloc[0]
    assert srcc["n"] == 2  # the reused copy of repeat 1 counts once
    assert len(srcc["commits"]) == 1  # both repeats ran this code
    assert srcc["median"] == pytest.approx(np.median([r["test/srcc"] for r in results]))
    assert (tmp_path / "sweep/aggregate.md").is_file()


@pytest.fixture
def tiny_table(tmp_path) -> Path:
    spec = {
        "title": "tiny",
        "source": "StairIQA Table IV (values used only to test the columns)",
        "protocol": ["protocol=content"],
        "repeats": 2,
        "metrics": ["test/srcc", "test/plcc"],
        "base": [o for o in TINY_DATA if o.startswith("protocol.")]
        + TINY_TRAINING
        + ["logger=csv", "callbacks.progress_bar=null"],
        # Brackets and spaces in labels, as paper tables have them, must reach Hydra safely.
        "rows": {"lite0 (tiny)": ["model.backbone.name=tf_efficientnet_lite0"]},
        "columns": {
            "synthetic": ["data=synthetic"]
            + [o for o in TINY_DATA if not o.startswith("protocol.")],
            "leave-one-out": [
                "data=synthetic_pair",
                "protocol=leave_one_out",
                "protocol.held_out=synth_b",
            ]
            + TINY_PAIR,
        },
        "published": {"lite0 (tiny)": {"synthetic": {"test/srcc": 0.5}}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_reproduce_table_runs_missing_cells_then_reuses_them(tiny_table, tmp_path, cache_dir):
    extra = [
        f"paths.log_dir={tmp_path / 'logs'}",
        f"paths.cache_dir={cache_dir}",
        f"paths.data_root={tmp_path / 'no_data_here'}",
    ]
    frame, launched = reproduce(str(tiny_table), extra, results_dir=tmp_path / "results")
    assert launched == 4  # 2 cells x 2 repeats
    out = tmp_path / "results" / "tiny"
    table = pd.read_csv(out / "table.csv")
    cell = table[(table["column"] == "synthetic") & (table["metric"] == "test/srcc")].iloc[0]
    assert cell["status"] == "ok" and cell["n"] == 2
    stored = [
        json.loads(p.read_text())["results"]["metrics"]["test/srcc"]
        for p in (tmp_path / "logs" / "store").glob("*.json")
        if json.loads(p.read_text())["results"]["data"]["name"] == "synthetic"
    ]
    assert cell["ours"] == pytest.approx(np.median(stored))
    assert cell["published"] == 0.5 and cell["diff"] == pytest.approx(cell["ours"] - 0.5)
    markdown = (out / "table.md").read_text()
    assert "make reproduce-table TABLE=tiny" in markdown and "git commit" in markdown
    assert (out / "table.tex").read_text().startswith(r"\begin{tabular}")
    # Rerunning launches nothing and renders the same numbers.
    frame2, launched2 = reproduce(str(tiny_table), extra, results_dir=tmp_path / "results")
    assert launched2 == 0
    assert np.allclose(frame2["ours"].astype(float), frame["ours"].astype(float), equal_nan=True)


def _absent_table(folder: Path) -> Path:
    """A one-cell table whose database folder is not there."""
    spec = {
        "title": "absent",
        "source": "none",
        "repeats": 1,
        "metrics": ["test/srcc"],
        "rows": {"baseline": []},
    }
    spec["columns"] = {
        "KonIQ-10k": ["data=koniq10k", "protocol=official", f"data.data_dir={folder / 'nowhere'}"]
    }
    path = folder / "absent.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_cells_without_their_database_say_absent(tmp_path):
    path = _absent_table(tmp_path)
    frame, launched = reproduce(
        str(path), [f"paths.log_dir={tmp_path / 'logs'}"], results_dir=tmp_path / "results"
    )
    assert launched == 0
    assert frame.iloc[0]["status"] == "absent"
    assert "nowhere" in frame.iloc[0]["detail"]
    assert "absent" in (tmp_path / "results" / "absent" / "table.md").read_text()


def test_the_command_reads_and_renders_in_the_configured_folders(tmp_path):
    """``iqa-table <name>`` finds the spec in ``--tables-dir`` or ``paths.tables_dir`` and renders
    into ``--results-dir`` or ``paths.results_dir``."""
    from iqa_lab.evaluation.tables import main

    specs = tmp_path / "specs"
    specs.mkdir()
    _absent_table(specs)
    for options in (
        ["--tables-dir", str(specs), "--results-dir", str(tmp_path / "options")],
        [f"paths.tables_dir={specs}", f"paths.results_dir={tmp_path / 'overrides'}"],
    ):
        with pytest.raises(SystemExit) as exit_status:
            main(["absent", f"paths.log_dir={tmp_path / 'logs'}", *options])
        assert exit_status.value.code == 0
    for folder in ("options", "overrides"):
        assert "absent" in (tmp_path / folder / "absent" / "table.md").read_text()


def test_each_launched_cell_says_k_of_n_runs_done_rate_and_eta(tmp_path, monkeypatch, capsys):
    path = _absent_table(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec.update(repeats=2, rows={"baseline": [], "longer": ["trainer.max_epochs=2"]})
    spec["columns"] = {
        "synthetic": ["data=synthetic"] + TINY_DATA,
        "reseeded": ["data=synthetic", "data.seed=1"] + TINY_DATA,
    }
    path.write_text(yaml.safe_dump(spec))  # sorts the columns: reseeded, synthetic
    now = [0.0]
    monkeypatch.setattr(progress, "CLOCK", lambda: now[0])

    def launch(cell, spec, sweep_root, heading):  # each run takes 30 s; nothing is trained
        print(heading)
        now[0] += 30.0 * len(cell.missing)
        return 0

    monkeypatch.setattr(tables, "launch", launch)
    extra = [f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_root={tmp_path}"]
    _, launched = reproduce(str(path), extra, results_dir=tmp_path / "results")
    out = capsys.readouterr().out
    assert launched == 8
    assert re.findall(r"^\[absent\] cell .*$", out, re.MULTILINE) == [
        "[absent] cell 1 of 4: baseline × reseeded: running repeats [0, 1] — "
        "0/8 runs (0%), ? runs/s, elapsed 0s, ETA ?",
        "[absent] cell 2 of 4: baseline × synthetic: running repeats [0, 1] — "
        "2/8 runs (25%), 30 s per run, elapsed 1m00s, ETA 3m00s",
        "[absent] cell 3 of 4: longer × reseeded: running repeats [0, 1] — "
        "4/8 runs (50%), 30 s per run, elapsed 2m00s, ETA 2m00s",
        "[absent] cell 4 of 4: longer × synthetic: running repeats [0, 1] — "
        "6/8 runs (75%), 30 s per run, elapsed 3m00s, ETA 1m00s",
    ]
    assert f"launched 8 run(s) in 4m00s; rendered into {tmp_path / 'results' / 'absent'}" in out


def test_a_shared_run_row_reads_each_column_from_one_run(tmp_path):
    """``column_overrides: false``: one run (e.g. IMDT over several databases) serves the row's
    columns, each reading its own database's metrics; ``{row}``/``{column}`` name per-cell keys."""
    from iqa_lab.evaluation.tables import load_spec, metric_key, plan

    spec_path = tmp_path / "shared.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "title": "shared",
                "source": "test",
                "repeats": 1,
                "metrics": ["test/srcc"],
                "names": {"A": "synth_a", "B": "synth_b"},
                "rows": {
                    "IMDT": {
                        "overrides": ["experiment=stairiqa_imdt_demo"],
                        "column_overrides": False,
                    },
                    "single": ["model=baseline"],
                },
                "columns": {
                    "A": ["data=synthetic", "data.photos=[astronaut,coffee,camera]"],
                    "B": ["data=synthetic", "data.photos=[brick,coins,moon]"],
                },
            }
        )
    )
    spec = load_spec(str(spec_path))
    cells = {(c.row, c.column): c for c in plan(spec, [])}
    assert cells["IMDT", "A"].keys == cells["IMDT", "B"].keys  # one run for the row
    assert cells["single", "A"].keys != cells["single", "B"].keys
    assert not any("data=synthetic" in o for o in cells["IMDT", "A"].overrides)
    assert metric_key("test/srcc", spec, "IMDT", "B") == "test/synth_b/srcc"
    assert metric_key("test/srcc", spec, "single", "B") == "test/srcc"
    assert (
        metric_key("test/{row}/by_{column}/srcc", spec, "A", "B") == "test/synth_a/by_synth_b/srcc"
    )


def test_aggregate_says_what_sets_each_group_apart():
    from iqa_lab.evaluation.aggregate import settings

    def run(paths, repeat):
        return {
            "config": {
                "model": {"staircase": {"paths": paths}},
                "data": {"name": "biq"},
                "protocol": {"repeat": repeat},
                "paths": {"output_dir": f"/o/{paths}{repeat}"},
            }
        }

    groups = {"a": [run(None, 0), run(None, 1)], "b": [run([], 0), run([], 1)]}
    assert settings(groups) == {"a": "model.staircase.paths=None", "b": "model.staircase.paths=[]"}
    assert settings({"a": groups["a"]}) == {"a": ""}


def _mixed_protocol_table(folder: Path) -> Path:
    """A table whose columns replace its protocol (official, leave-one-out), one absent database
    and a row that does not train."""
    spec = {
        "title": "mixed protocols",
        "source": "test",
        "protocol": ["protocol=content"],
        "repeats": 2,
        "metrics": ["test/srcc"],
        "base": [o for o in TINY_DATA if o.startswith("protocol.")] + TINY_TRAINING,
        "rows": {
            "baseline": [],
            "BRISQUE": {
                "overrides": ["model=classical", "model.metric=brisque_live"],
                "entry": "eval",
                "base": False,
            },
        },
        "columns": {
            "synthetic": ["data=synthetic"]
            + [o for o in TINY_DATA if not o.startswith("protocol.")],
            "KonIQ-10k": ["data=koniq10k", "protocol=official"],
            "held out": [
                "data=synthetic_pair",
                "protocol=leave_one_out",
                "protocol.held_out=synth_b",
            ]
            + TINY_PAIR,
        },
    }
    path = folder / "mixed_protocols.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_each_cell_names_its_protocol_selection_iqr_commit_and_data_root(tmp_path):
    """The table says what each cell ran (not one protocol for columns that ran others), the IQR
    beside the median, the commit of its runs, and databases relative to ``<data_root>``."""
    from iqa_lab.evaluation.tables import load_spec, plan, render

    data_root = tmp_path / "databases"
    spec = load_spec(str(_mixed_protocol_table(tmp_path)))
    cells = plan(spec, [f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_root={data_root}"])
    cell = {(c.row, c.column): c for c in cells}
    done = cell["baseline", "synthetic"]
    done.status, done.commits = "ok", ["a" * 40, "b" * 40 + "-dirty"]
    done.values = {"test/srcc": describe([0.7, 0.8, 0.9])}
    render(cells, spec, tmp_path / "out", "make reproduce-table", str(data_root))
    markdown = (tmp_path / "out" / "table.md").read_text()
    lines = markdown.splitlines()
    assert (
        "| baseline | synthetic | content: train 50% / test 50%, val 50% of train | "
        "max val/srcc on the val split | 0.8000 (IQR 0.1000, n=3) | — | — | "
        "aaaaaaaaaa, bbbbbbbbbb-dirty |"
    ) in lines
    assert (
        "| baseline | KonIQ-10k | official: the database's official sets, val 50% of train "
        "where none is published | max val/srcc on the val split | "
        "absent: database absent: <data_root>/koniq10k | — | — | — |"
    ) in lines
    assert any(
        line.startswith(
            "| baseline | held out | leave_one_out: held out synth_b, val 50% of train | "
            "max val/srcc on the val split |"
        )
        for line in lines
    )
    assert any(line.startswith("| BRISQUE | synthetic | content: ") for line in lines)
    assert "| none (no training) |" in markdown
    for name in ("table.md", "table.csv", "table.tex", "provenance.json"):
        assert str(data_root) not in (tmp_path / "out" / name).read_text()
    provenance = json.loads((tmp_path / "out" / "provenance.json").read_text())
    shown = next(
        c for c in provenance["cells"] if c["row"] == "baseline" and c["column"] == "synthetic"
    )
    assert shown["commits"] == ["a" * 40, "b" * 40 + "-dirty"]
    assert shown["protocol"].startswith("content: ")
    assert r"0.8000$^\dagger$" not in (tmp_path / "out" / "table.tex").read_text()
    assert "& 0.8000 & 0.1000 &" in (tmp_path / "out" / "table.tex").read_text()


def test_dry_run_prints_the_plan_writes_nothing_and_a_code_change_reruns(
    tmp_path, capsys, monkeypatch
):
    from iqa_lab.evaluation import runstore
    from iqa_lab.evaluation.tables import load_spec, plan

    path = _absent_table(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["repeats"] = 2
    spec["columns"]["synthetic"] = ["data=synthetic"] + TINY_DATA
    path.write_text(yaml.safe_dump(spec))
    extra = [f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_root={tmp_path}"]
    cells = {c.column: c for c in plan(load_spec(str(path)), extra)}
    # Repeat 0 of the synthetic cell finished earlier, at another commit.
    finished = tmp_path / "logs" / "runs" / "0"
    finished.mkdir(parents=True)
    (finished / "results.json").write_text("{}")
    store = tmp_path / "logs" / "store"
    store.mkdir()
    entry = {"output_dir": str(finished), "git_commit": "c" * 40, "results": {}}
    (store / f"{cells['synthetic'].keys[0]}.json").write_text(json.dumps(entry))
    frame, launched = reproduce(str(path), extra, results_dir=tmp_path / "results", dry_run=True)
    out = capsys.readouterr().out
    assert launched == 0
    assert f"- baseline × synthetic: run repeats [1]; reuse repeats [0] from {'c' * 40}" in out
    assert (
        "- baseline × KonIQ-10k: absent: database absent: <data_root>/nowhere "
        "[official: the database's official sets" in out
    )
    assert "1 run(s) would be launched" in out
    assert not (tmp_path / "results").exists()
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["runs", "store"]
    assert len(list(store.iterdir())) == 1
    # After a code change the same repeat is no longer finished.
    monkeypatch.setattr(runstore, "code_version", lambda: "code after a fix")
    again = {c.column: c for c in plan(load_spec(str(path)), extra)}
    assert again["synthetic"].missing == [0, 1]


def test_flop_and_parameter_counts_match_a_hand_count():
    import torch

    from iqa_lab.models.size import count_flops, count_parameters, measure

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, kernel_size=3, padding=1),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    )
    assert count_parameters(model) == (4 * 3 * 3 * 3 + 4) + (4 * 2 + 2)
    conv = 2 * (8 * 6) * 4 * (3 * 3 * 3)  # 2 FLOPs per multiply-add, each output pixel
    linear = 2 * 4 * 2
    assert count_flops(model, (8, 6)) == conv + linear
    assert measure(model, (8, 6))["macs"] == (conv + linear) / 2


def test_stairiqa_resnet50_has_the_parameters_of_table_iv(make_cfg):
    """StairIQA Table IV: ResNet50 without staircase, one regressor: 23.770 M parameters."""
    from iqa_lab.models.size import build_without_weights, count_parameters

    cfg = make_cfg(
        "train",
        ["experiment=stairiqa", "model.backbone.name=resnet50", "model.staircase.paths=[]"],
        tiny=False,
    )
    model = build_without_weights(cfg.model, ["koniq10k"])
    assert round(count_parameters(model) / 1e6, 3) == 23.770


def test_a_table_with_model_size_renders_measured_and_published_sizes(tmp_path):
    from iqa_lab.evaluation.tables import load_spec, model_sizes, plan, render

    spec_path = tmp_path / "sized.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "title": "sized",
                "source": "test",
                "repeats": 1,
                "metrics": ["test/srcc"],
                "rows": {
                    "lite0": ["model.backbone.name=tf_efficientnet_lite0"],
                    "NIQE": {
                        "overrides": ["model=classical", "model.metric=niqe"],
                        "entry": "eval",
                    },
                },
                "columns": {"synthetic": ["data=synthetic"]},
                "model_size": {
                    "input_size": [32, 32],
                    "published": {"lite0": {"params_m": 3.5, "gflops": 0.4}},
                },
            }
        )
    )
    spec = load_spec(str(spec_path))
    cells = plan(spec, [f"paths.log_dir={tmp_path / 'logs'}"])
    sizes = model_sizes(spec, cells)
    assert list(sizes) == ["lite0"] and sizes["lite0"]["input_size"] == [32, 32]
    assert sizes["lite0"]["flops"] == 2 * sizes["lite0"]["macs"] > 0
    render(cells, spec, tmp_path / "out", "make reproduce-table", None, sizes)
    markdown = (tmp_path / "out" / "table.md").read_text()
    size = sizes["lite0"]
    assert (
        f"| lite0 | {size['params'] / 1e6:.3f} | {size['flops'] / 1e9:.3f} | "
        f"{size['macs'] / 1e9:.3f} | 3.500 | 0.400 |"
    ) in markdown
    provenance = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert provenance["model_size"]["lite0"]["params"] == size["params"]


def _spec_file(folder: Path, spec: dict) -> Path:
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump({"title": "t", "source": "test", "repeats": 1, **spec}))
    return path


PLCC_SPEC = {
    "metrics": ["test/srcc", "test/plcc", "test/plcc_l4"],
    "rows": {"ours": ["model=baseline"], "NIQE": ["model=classical"]},
    "columns": {"A": ["data=synthetic"]},
    "published": {"ours": {"A": {"srcc": 0.9, "plcc": 0.93}}, "NIQE": {"A": {"plcc": 0.65}}},
}


def test_a_published_plcc_must_say_which_plcc_it_is(tmp_path):
    from iqa_lab.evaluation.tables import _published, load_spec

    path = _spec_file(tmp_path, PLCC_SPEC)
    with pytest.raises(SystemExit, match=r"spec\.yaml: the published PLCC of NIQE × A .*plcc_conv"):
        load_spec(str(path))
    l4 = {"metric": "plcc_l4", "citation": "official code, utils.performance_fit"}
    for convention, message in (
        ({"default": {"metric": "plcc_l4"}}, "lacks a citation"),
        ({"default": {"metric": "logistic", "citation": "x"}}, "must name its metric"),
        ({"default": {**l4, "metric": "plcc_l5"}}, "no test/plcc_l5"),
    ):
        with pytest.raises(SystemExit, match=message):
            load_spec(str(_spec_file(tmp_path, {**PLCC_SPEC, "plcc_convention": convention})))
    raw = {"metric": "plcc", "citation": "eq. (10): PLCC of the raw scores"}
    spec = load_spec(
        str(_spec_file(tmp_path, {**PLCC_SPEC, "plcc_convention": {"default": l4, "NIQE": raw}}))
    )
    # Each published PLCC stands beside its own metric only.
    assert _published(spec, "ours", "A", "test/plcc_l4") == 0.93
    assert _published(spec, "ours", "A", "test/plcc") is None
    assert _published(spec, "NIQE", "A", "test/plcc") == 0.65
    assert _published(spec, "NIQE", "A", "test/plcc_l4") is None
    assert _published(spec, "ours", "A", "test/srcc") == 0.9
    # A published key naming another fit than the stated one is a contradiction.
    contradicting = {**PLCC_SPEC, "plcc_convention": {"default": l4, "NIQE": raw}}
    contradicting["published"] = {"ours": {"A": {"plcc_l5": 0.93}}}
    with pytest.raises(SystemExit, match="publishes 'plcc_l5' but plcc_convention says"):
        load_spec(str(_spec_file(tmp_path, contradicting)))


def test_published_only_rows_and_bracketed_gains(tmp_path):
    """Rows the paper has but iqa_lab does not implement render as published only (nothing runs);
    ``gains`` runs one baseline per column and brackets ours − baseline beside the paper's."""
    from iqa_lab.evaluation.tables import gain_cells, load_spec, plan

    photos = {"A": "[astronaut,coffee,camera]", "B": "[brick,coins,moon]"}
    spec_path = _spec_file(
        tmp_path,
        {
            "metrics": ["test/srcc"],
            "rows": {
                "ours": ["model=baseline"],
                "HyperIQA": {"published_only": True, "note": "retrained by the paper"},
            },
            "columns": {c: ["data=synthetic", f"data.photos={p}"] for c, p in photos.items()},
            "published": {"ours": {"A": 0.80, "B": 0.60}, "HyperIQA": {"A": 0.75}},
            "gains": {
                "label": "gain over the column's database alone",
                "metric": "test/by_{column}/srcc",
                "columns": {
                    c: ["data=synthetic", f"data.photos={p}", "trainer.max_epochs=3"]
                    for c, p in photos.items()
                },
                "published": {"ours": {"A": 0.0669, "B": -0.01}},
            },
        },
    )
    extra = [f"paths.log_dir={tmp_path / 'logs'}"]
    spec = load_spec(str(spec_path))
    cells, baselines = plan(spec, extra), gain_cells(spec, extra)
    assert [c.status for c in cells if c.row == "HyperIQA"] == ["published-only"] * 2
    assert len(baselines) == 2 and all(c.missing == [0] for c in baselines)
    # Fake finished runs in the store: ours 0.80 / 0.62, the baselines 0.70 / 0.65.
    store = tmp_path / "logs" / "store"
    store.mkdir(parents=True)
    ours = {"A": 0.80, "B": 0.62}
    for cell in cells + baselines:
        for key in cell.keys:
            value = ours[cell.column] if cell in cells else {"A": 0.70, "B": 0.65}[cell.column]
            metric = "test/srcc" if cell in cells else f"test/by_{cell.column}/srcc"
            finished = tmp_path / "logs" / "runs" / key
            finished.mkdir(parents=True)
            (finished / "results.json").write_text("{}")
            entry = {"output_dir": str(finished), "results": {"metrics": {metric: value}}}
            (store / f"{key}.json").write_text(json.dumps(entry))
    frame, launched = reproduce(str(spec_path), extra, results_dir=tmp_path / "results")
    assert launched == 0
    line = frame[(frame["row"] == "ours") & (frame["column"] == "A")].iloc[0]
    assert line["gain"] == pytest.approx(0.10) and line["published_gain"] == 0.0669
    markdown = (tmp_path / "results" / "spec" / "table.md").read_text()
    for shown in (
        "| 0.8000 (+0.1000) (IQR 0.0000, n=1) | 0.8000 (+0.0669) | +0.0000 | code version",
        "| 0.6200 (-0.0300) (IQR 0.0000, n=1) | 0.6000 (-0.0100) | +0.0200 | code version",
    ):
        assert shown in markdown
    assert (
        "| HyperIQA | A | — | — | published-only: not implemented in iqa_lab: "
        "published value only, nothing run (retrained by the paper) | 0.7500 | — | — |" in markdown
    )
    assert "- (bracket): gain over the column's database alone" in markdown
    assert (
        "0.8000 (+0.1000) & 0.0000 & 0.8000 (+0.0669)"
        in (tmp_path / "results" / "spec" / "table.tex").read_text()
    )


def test_shipped_specs_name_their_plcc_and_carry_every_row_of_the_paper():
    from iqa_lab.evaluation.tables import load_spec

    stairiqa = load_spec("stairiqa_table1")
    # StairIQA's model: its official code's PLCC is after the 4-parameter logistic fit.
    assert stairiqa["published"]["Proposed (StairIQA + IMDT)"]["CLIVE"] == {
        "srcc": 0.8992,
        "plcc_l4": 0.9175,
    }
    assert (
        "utils.py performance_fit"
        in stairiqa["plcc_convention"]["Proposed (StairIQA + IMDT)"]["citation"]
    )
    paper_rows = ["QAC", "NIQE", "IL-NIQE", "BRISQUE (retrained SVR)", "BMPRI", "CNNIQA"]
    paper_rows += [
        "WaDIQaM-NR",
        "SFA",
        "DB-CNN",
        "HyperIQA",
        "UNIQUE",
        "Proposed (StairIQA + IMDT)",
    ]
    for name in ("stairiqa_table1", "stairiqa_table2", "stairiqa_table3"):
        spec = load_spec(name)
        assert list(spec["rows"]) == paper_rows, name
        run = [r for r, v in spec["rows"].items() if not v.get("published_only")]
        assert run == ["NIQE", "BRISQUE (retrained SVR)", "Proposed (StairIQA + IMDT)"], name
    assert load_spec("stairiqa_table3")["published"]["NIQE"]["LIVE"] == {"plcc": 0.6511}
    assert load_spec("stairiqa_table5")["gains"]["published"]["CLIVE"]["BID"] == 0.0669
    for name in ("demo", "stairiqa_table6", "stairiqa_table7"):
        assert load_spec(name)["plcc_convention"], name
