"""Hydra callbacks for sweeps (``conf/hparams_search``)."""

from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

SQLITE = "sqlite:///"


class SqliteStorageFolder(Callback):
    """Create the folder of the sweeper's SQLite storage (``hydra.sweeper.storage``) before the
    sweep opens it: SQLite does not create folders, and Hydra creates the sweep's only later."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        storage = str(config.hydra.sweeper.get("storage") or "")
        if storage.startswith(SQLITE):
            Path(storage[len(SQLITE) :]).parent.mkdir(parents=True, exist_ok=True)
