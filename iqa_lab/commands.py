"""The console scripts of the Hydra apps: ``iqa-train``, ``iqa-eval``, ``iqa-check``.

Hydra reads an app's ``config_path`` (``../conf``) beside the app's file only when the app runs as
``__main__``; imported by a console script it looks for a Python package ``conf`` instead, which
the repository's ``conf/`` is not. Each script therefore runs its module as ``python -m`` does.
The argparse commands (``iqa-table``, ``iqa-aggregate``) are their modules' ``main``.
"""

from __future__ import annotations

import runpy


def _run_as_main(module: str) -> None:
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def train() -> None:
    """``iqa-train``: ``python -m iqa_lab.train``."""
    _run_as_main("iqa_lab.train")


def evaluate() -> None:
    """``iqa-eval``: ``python -m iqa_lab.eval``."""
    _run_as_main("iqa_lab.eval")


def check() -> None:
    """``iqa-check``: ``python -m iqa_lab.data.check``."""
    _run_as_main("iqa_lab.data.check")
