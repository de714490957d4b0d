"""One-line errors: the project's own errors (config keys, label files, bad input, leakage) end a
command with one line naming the key or file and the fix, exit 1, no traceback; ``--verbose`` or
``HYDRA_FULL_ERROR=1`` shows the traceback once. Numeric keys are checked at startup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import InstantiationException

from iqa_lab import cli
from iqa_lab.config_checks import check_config
from iqa_lab.data.images import BadImageError
from iqa_lab.data.label_files import LabelFileError
from iqa_lab.data.leakage import LeakageError
from iqa_lab.errors import ConfigError, IQALabError

ROOT = Path(__file__).resolve().parents[1]


# --- startup checks of numeric keys ----------------------------------------------------------


def test_startup_check_names_every_wrong_key_with_its_value_and_the_fix(make_cfg):
    cfg = make_cfg(
        "train",
        [
            "data.batch_size=0",
            "data.eval_batch_size=2.5",
            "data.transforms.train.crop_size=0",
            "protocol.train_fraction=1.5",
            "model.optimizer.lr=-1",
        ],
    )
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert str(err.value) == (
        "protocol.train_fraction=1.5 must be a number in (0, 1); "
        "model.optimizer.lr=-1 must be a number > 0; "
        "data.batch_size=0 must be a whole number >= 1; "
        "data.eval_batch_size=2.5 must be a whole number >= 1, or null; "
        "data.transforms.train.crop_size=0 must be a whole number >= 1, or null: "
        "set them in the config or on the command line (key=value)"
    )


def test_startup_check_accepts_nulls_where_they_mean_none_and_refuses_bools(make_cfg):
    check_config(make_cfg("train", ["data.eval_batch_size=null", "trainer.max_epochs=-1"]))
    with pytest.raises(ConfigError, match=r"^data\.batch_size=True must be a whole number >= 1"):
        check_config(make_cfg("train", ["data.batch_size=true"]))


def test_startup_check_covers_the_members_of_data_mixed(make_cfg):
    cfg = make_cfg(
        "train",
        ["experiment=stairiqa_imdt_demo", "data.databases.synth_a.transforms.eval.crop_size=-3"],
        tiny=False,
    )
    with pytest.raises(ConfigError, match=r"^data\.databases\.synth_a\.transforms\.eval\.crop"):
        check_config(cfg)


def test_training_stops_at_startup_on_batch_size_zero(make_cfg):
    # Before: the run built the data and the model and died in torch's DataLoader without
    # naming the key ("batch_size should be a positive integer value").
    from iqa_lab.train import train

    with pytest.raises(ConfigError, match=r"^data\.batch_size=0 must be a whole number >= 1"):
        train(make_cfg("train", ["data.batch_size=0"]))


# --- how a command reports an error ------------------------------------------------------------


def _raise(err: BaseException):
    def main():
        raise err

    return main


def test_a_project_error_prints_one_line_and_exits_1(capsys):
    message = "/db/labels.csv: no column 'mos'\n  - seen: image, score\nset data.mos_column"
    with pytest.raises(SystemExit) as exit_status:
        cli.run_command(_raise(LabelFileError(message)), ["iqa-train"])
    assert exit_status.value.code == 1
    assert capsys.readouterr().err == (
        "error: /db/labels.csv: no column 'mos' | - seen: image, score | set data.mos_column\n"
    )


def test_a_project_error_wrapped_by_hydra_instantiate_prints_its_own_line(capsys):
    wrapped = InstantiationException("Error in call to target 'IQADataModule':\nfull_key: data")
    wrapped.__cause__ = ConfigError("data.on_bad must be one of ('raise', 'skip'), got 'maybe'")
    with pytest.raises(SystemExit):
        cli.run_command(_raise(wrapped), ["iqa-train"])
    assert capsys.readouterr().err == (
        "error: data.on_bad must be one of ('raise', 'skip'), got 'maybe'\n"
    )


@pytest.mark.parametrize("how", ["--verbose", "HYDRA_FULL_ERROR=1"])
def test_verbose_or_hydra_full_error_raises_the_error_itself(how, monkeypatch, capsys):
    argv = ["iqa-train", "data=csv"]
    monkeypatch.delenv(cli.VERBOSE_ENV, raising=False)
    monkeypatch.delenv(cli.HYDRA_FULL_ERROR, raising=False)
    if how == "--verbose":
        argv.insert(1, "--verbose")
    else:
        monkeypatch.setenv(cli.HYDRA_FULL_ERROR, "1")
    error = LeakageError("the split leaks")
    with pytest.raises(LeakageError) as raised:
        cli.run_command(_raise(error), argv)
    assert raised.value is error and argv == ["iqa-train", "data=csv"]  # Hydra never sees it
    assert capsys.readouterr().err == ""


def test_other_errors_keep_their_traceback_and_the_environment_is_restored(monkeypatch):
    monkeypatch.delenv(cli.HYDRA_FULL_ERROR, raising=False)
    with pytest.raises(ZeroDivisionError):
        cli.run_command(_raise(ZeroDivisionError("a bug")), ["iqa-eval"])
    assert cli.HYDRA_FULL_ERROR not in os.environ and cli.VERBOSE_ENV not in os.environ


def test_a_bug_while_handling_a_project_error_keeps_its_traceback():
    def main():
        try:
            raise LabelFileError("/db/labels.csv: unreadable")
        except LabelFileError:
            {}["a bug in the handler"]

    with pytest.raises(KeyError):
        cli.run_command(main, ["iqa-train"])


def test_an_error_from_a_dataloader_worker_gives_the_original_message():
    # torch re-raises a worker's error with the worker's traceback as its message.
    worker = BadImageError(
        "Caught BadImageError in DataLoader worker process 0.\nOriginal Traceback (most recent "
        'call last):\n  File "x.py", line 1, in f\n    raise BadImageError(\n'
        "iqa_lab.data.images.BadImageError: /db/a.png: truncated PNG file; replace the file"
    )
    assert cli.one_line(worker) == "/db/a.png: truncated PNG file; replace the file"


def test_the_projects_errors_share_one_base_and_keep_their_old_types():
    from iqa_lab.data.bad_inputs import BadInputError

    for error in (LabelFileError, LeakageError, BadInputError, ConfigError):
        assert issubclass(error, IQALabError) and issubclass(error, ValueError)
    assert issubclass(BadImageError, IQALabError) and issubclass(BadImageError, RuntimeError)


# --- every entry point, end to end ---------------------------------------------------------------

HYDRA_APPS = ("iqa_lab.train", "iqa_lab.eval", "iqa_lab.data.check", "iqa_lab.evaluation.tables")
TINY = ["data.photos=[astronaut]", "data.distortions=[jpeg]", "data.crop_size=64"]


def _command(args: list[str], tmp_path: Path, env: dict | None = None):
    env = {
        **{k: v for k, v in os.environ.items() if k not in (cli.VERBOSE_ENV, cli.HYDRA_FULL_ERROR)},
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "IQA_LAB_PROJECT": str(ROOT),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


MISSING_LABELS = (
    "{tmp}/missing_db/labels.csv: label table (data.label_file) not found; set data.data_dir to "
    "the folder the database's authors distribute (it holds this file)"
)
BATCH_SIZE_0 = (
    "error: data.batch_size=0 must be a whole number >= 1: set it in the config or on the "
    "command line (key=value)"
)
slow = pytest.mark.slow  # a subprocess each (torch, Lightning): ~5 s on an idle core


@pytest.mark.parametrize(
    "args,status,line",
    [
        pytest.param(
            ["iqa_lab.train", "data.batch_size=0", *TINY], 1, BATCH_SIZE_0, id="train", marks=slow
        ),
        pytest.param(
            ["iqa_lab.eval", "ckpt_path=none.ckpt", *TINY],
            1,
            "error: ckpt_path=none.ckpt: no such checkpoint; give a trained run's "
            "checkpoints/<name>.ckpt",
            id="eval",
            marks=slow,
        ),
        pytest.param(
            ["iqa_lab.data.check", "data.on_bad=maybe", *TINY],
            1,
            "error: data.on_bad must be one of ('raise', 'skip'), got 'maybe'",
            id="check-key",
            marks=slow,
        ),
        pytest.param(  # the check's own verdict "label files cannot be parsed" (exit 2)
            ["iqa_lab.data.check", "data=csv", "data.data_dir={tmp}/missing_db"],
            2,
            "cannot parse the label files of 'csv': " + MISSING_LABELS,
            id="check-labels",
            marks=slow,
        ),
        pytest.param(  # every cell's config is checked before any run is launched
            ["iqa_lab.evaluation.tables", "demo", "--dry-run", "data.batch_size=0"],
            1,
            BATCH_SIZE_0,
            id="table",
            marks=slow,
        ),
        pytest.param(
            ["iqa_lab.evaluation.aggregate", "missing_runs"],
            1,
            "error: missing_runs: no such folder; give folders that hold runs (e.g. "
            "logs/train/multiruns/<date>)",
            id="aggregate",
        ),
    ],
)
def test_every_entry_point_ends_a_project_error_with_one_line(args, status, line, tmp_path):
    # Before: 46-133 lines with two tracebacks (train), Hydra's wrapped message (check), exit 0
    # and an empty aggregate written into the misspelt folder (aggregate).
    run = _run_one_line_error(args, tmp_path)
    assert run.returncode == status
    assert line.format(tmp=tmp_path) in run.stdout.splitlines() + run.stderr.splitlines()
    assert not (tmp_path / "missing_runs").exists()


def _run_one_line_error(args: list[str], tmp_path: Path, env: dict | None = None):
    """Run a command that fails on the project's error: no traceback, at most 3 lines (the
    others are the run's own log: Lightning's seed, the output dir)."""
    args = [arg.format(tmp=tmp_path) for arg in args]
    if args[0] in HYDRA_APPS:
        args += [f"paths.cache_dir={tmp_path / 'cache'}", f"paths.log_dir={tmp_path}"]
    run = _command(args, tmp_path, env)
    output = run.stdout + run.stderr
    assert "Traceback" not in output and len(output.splitlines()) <= 3, output
    return run


TRAIN_WITHOUT_LABELS = ["iqa_lab.train", "data=csv", "data.data_dir={tmp}/missing_db"]


def test_a_training_error_is_one_line_and_verbose_shows_its_traceback_once(tmp_path):
    quiet = _run_one_line_error(TRAIN_WITHOUT_LABELS, tmp_path)
    assert quiet.returncode == 1
    assert quiet.stderr.splitlines()[-1] == "error: " + MISSING_LABELS.format(tmp=tmp_path)
    (log,) = tmp_path.glob("train/runs/*/train.log")  # the run's log keeps the traceback
    assert log.read_text().count("Traceback (most recent call last)") == 1
    args = [arg.format(tmp=tmp_path) for arg in TRAIN_WITHOUT_LABELS]
    _assert_one_traceback(_command([*args, "--verbose"], tmp_path))


@slow
def test_hydra_full_error_shows_the_traceback_once(tmp_path):
    args = [arg.format(tmp=tmp_path) for arg in TRAIN_WITHOUT_LABELS]
    _assert_one_traceback(_command(args, tmp_path, {cli.HYDRA_FULL_ERROR: "1"}))


def _assert_one_traceback(run) -> None:
    output = run.stdout + run.stderr
    assert run.returncode == 1
    assert output.count("Traceback (most recent call last)") == 1, output
    assert "LabelFileError: " in output and "error: " not in output
