"""The console scripts: ``iqa-train``, ``iqa-eval``, ``iqa-score``, ``iqa-explain``, ``iqa-check``,
``iqa-table``, ``iqa-aggregate``, ``iqa-bench``.

Hydra reads an app's ``config_path`` (``../conf``) beside the app's file only when the app runs as
``__main__``; imported by a console script it looks for a Python package ``conf`` instead, which
the repository's ``conf/`` is not. Each script therefore runs its module as ``python -m`` does,
the argparse commands too, so every command reports errors the same way (``iqa_lab.cli``: one
line for the project's own errors, ``--verbose`` for the traceback).
"""

from __future__ import annotations

import runpy


def _run_as_main(module: str, alter_sys: bool = True) -> None:
    """Run ``module``'s ``__main__`` block; ``alter_sys=False`` keeps ``sys.argv[0]``, the
    script's name that argparse shows in its usage line."""
    runpy.run_module(module, run_name="__main__", alter_sys=alter_sys)


def train() -> None:
    """``iqa-train``: ``python -m iqa_lab.train``."""
    _run_as_main("iqa_lab.train")


def evaluate() -> None:
    """``iqa-eval``: ``python -m iqa_lab.eval``."""
    _run_as_main("iqa_lab.eval")


def score() -> None:
    """``iqa-score``: ``python -m iqa_lab.score``."""
    _run_as_main("iqa_lab.score")


def explain() -> None:
    """``iqa-explain``: ``python -m iqa_lab.explain``."""
    _run_as_main("iqa_lab.explain")


def check() -> None:
    """``iqa-check``: ``python -m iqa_lab.data.check``."""
    _run_as_main("iqa_lab.data.check")


def table() -> None:
    """``iqa-table``: ``python -m iqa_lab.evaluation.tables``."""
    _run_as_main("iqa_lab.evaluation.tables", alter_sys=False)


def aggregate() -> None:
    """``iqa-aggregate``: ``python -m iqa_lab.evaluation.aggregate``."""
    _run_as_main("iqa_lab.evaluation.aggregate", alter_sys=False)


def bench() -> None:
    """``iqa-bench``: ``python -m iqa_lab.bench``."""
    _run_as_main("iqa_lab.bench")
