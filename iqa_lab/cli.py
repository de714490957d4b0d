"""How every command ends on an error: the project's own errors (``iqa_lab.errors``: bad input,
leakage, label files, config keys) print one line, ``error: <what, where, the fix>``, and exit 1;
``--verbose`` (anywhere on the command line) or ``HYDRA_FULL_ERROR=1`` shows the traceback instead.
Other errors are bugs or a library's and keep their traceback; Hydra's own config errors keep
Hydra's short message. A run's full traceback is always in its log file (``runs.task_wrapper``).

Each command's ``__main__`` block calls ``run_command(main)``; the console scripts run those blocks
(``iqa_lab.commands``). Nothing in this module imports from iqa_lab but ``errors``.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from iqa_lab.errors import IQALabError

VERBOSE_FLAG = "--verbose"
VERBOSE_HELP = "on an error, show its traceback (also: HYDRA_FULL_ERROR=1)"
# Set for the command's own process and inherited by the ones it starts (DDP ranks, the runs of
# iqa-table), so they report errors as the command does.
VERBOSE_ENV = "IQA_LAB_VERBOSE"
HYDRA_FULL_ERROR = "HYDRA_FULL_ERROR"


def take_verbose_flag(argv: list[str]) -> bool:
    """Whether ``argv`` (after its program name) holds ``--verbose``; removes it, since Hydra
    would refuse an unknown flag."""
    found = VERBOSE_FLAG in argv[1:]
    argv[1:] = [arg for arg in argv[1:] if arg != VERBOSE_FLAG]
    return found


def verbose_requested(argv: list[str]) -> bool:
    """``--verbose`` in ``argv`` (removed), else the inherited ``IQA_LAB_VERBOSE``, else
    ``HYDRA_FULL_ERROR=1``."""
    if take_verbose_flag(argv):
        return True
    return os.environ.get(VERBOSE_ENV, os.environ.get(HYDRA_FULL_ERROR)) == "1"


def project_error(err: BaseException) -> IQALabError | None:
    """The project's own error behind ``err``: itself or one it was raised ``from`` (Hydra wraps
    a constructor's error in an ``InstantiationException``). An error raised while another was
    being handled is not the other's: a bug in a handler keeps its traceback."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, IQALabError):
            return err
        seen.add(id(err))
        err = err.__cause__
    return None


def one_line(err: BaseException) -> str:
    """``err``'s message on one line, its lines joined by `` | `` (a list of bad files, of
    leaking images); an error re-raised from a DataLoader worker (whose message is the worker's
    traceback) gives the original message."""
    text = str(err)
    if "Original Traceback" in text:
        name = re.escape(type(err).__name__)
        last = list(re.finditer(rf"^(?:[\w.]+\.)?{name}: ", text, flags=re.MULTILINE))
        if last:
            text = text[last[-1].end() :]
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the block (processes started in it inherit them); restored
    afterwards."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def report(err: BaseException) -> int | None:
    """Print ``err`` the short way and return the exit status, or None when its traceback is
    what the user needs (not the project's error, not Hydra's)."""
    ours = project_error(err)
    if ours is not None:
        print(f"error: {one_line(ours)}", file=sys.stderr)
        return 1
    from hydra.errors import CompactHydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(err, CompactHydraException):  # as @hydra.main prints its own config errors
        print(str(err), file=sys.stderr)
        if isinstance(err.__cause__, OmegaConfBaseException):
            print(str(err.__cause__), file=sys.stderr)
        return 1
    return None


def run_command(main: Callable[[], object], argv: list[str] | None = None) -> None:
    """Run a command's ``main`` (a ``@hydra.main`` app or an argparse ``main``) with the project's
    error reporting (module docstring). ``argv`` defaults to ``sys.argv``."""
    argv = sys.argv if argv is None else argv
    verbose = verbose_requested(argv)
    # HYDRA_FULL_ERROR=1: @hydra.main raises a task's error instead of printing it, and this
    # function decides how it is shown.
    with environment(**{VERBOSE_ENV: "1" if verbose else "0", HYDRA_FULL_ERROR: "1"}):
        try:
            main()
        except Exception as err:
            status = None if verbose else report(err)
            if status is None:
                raise
            sys.exit(status)


def end_single_run(err: BaseException) -> None:
    """Inside a Hydra task under ``run_command`` without ``--verbose``: report ``err`` the short
    way and exit now when it is the project's (or Hydra's), before Hydra adds its "Error
    executing job with overrides" line. A multirun goes on with its other jobs instead, and
    ``run_command`` reports its first failure at the end."""
    if os.environ.get(VERBOSE_ENV) != "0" or not _single_run():
        return
    status = report(err)
    if status is not None:
        raise SystemExit(status)


def _single_run() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN


def one_line_errors(task: Callable) -> Callable:
    """Decorate a Hydra task (under ``@hydra.main``) so that a single run ends on the project's
    error with its one line (``end_single_run``)."""

    @functools.wraps(task)
    def wrapped(*args, **kwargs):
        try:
            return task(*args, **kwargs)
        except Exception as err:
            end_single_run(err)
            raise

    return wrapped


def log_traceback_to_files(logger: logging.Logger, message: str, err: BaseException) -> None:
    """Write ``message``, ``err`` and its traceback to the log files of ``logger``'s hierarchy
    only (a run's ``<task>.log``): the console gets the error once, from ``run_command``."""
    record = logger.makeRecord(
        logger.name,
        logging.ERROR,
        __file__,
        0,
        "%s: %s",
        (message, one_line(err)),
        (type(err), err, err.__traceback__),
    )
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
                handler.handle(record)
        current = current.parent if current.propagate else None
