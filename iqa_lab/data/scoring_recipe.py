"""What a trained checkpoint needs to score new images as its run evaluated them: each training
database's eval transform (``data.transforms.eval``, resolved) and MOS scale, and the collate.

``scoring_recipe(datamodule)`` is stored in every checkpoint at save time (``IQAModule``'s
``on_save_checkpoint``, key ``iqa_lab_scoring``); ``database_recipe`` picks one database's part
back out of it (``iqa-score``). Plain containers only, so checkpoints load with
``weights_only=True``.
"""

from __future__ import annotations

from collections.abc import Mapping

from omegaconf import DictConfig, ListConfig, OmegaConf

from iqa_lab.errors import ConfigError

CHECKPOINT_KEY = "iqa_lab_scoring"


def _plain(value):
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _database_part(datamodule) -> dict:
    return {
        "eval_transform": _plain(datamodule.transform_cfg["eval"]),
        "mos_range": [float(v) for v in datamodule.mos_range],
        "lower_better": bool(datamodule.lower_better),
        "synthetic_labels": bool(datamodule.synthetic_labels),
    }


def scoring_recipe(datamodule) -> dict:
    """``{"databases": {name: {eval_transform, mos_range, lower_better, synthetic_labels}},
    "collate": mode}`` of a run's set-up DataModule (each training database of ``data=mixed``)."""
    members = getattr(datamodule, "databases", None) or {datamodule.name: datamodule}
    trained = getattr(datamodule, "training_databases", None) or list(members)
    return {
        "databases": {name: _database_part(members[name]) for name in trained},
        "collate": datamodule.collate.mode,
    }


def database_recipe(recipe: dict | None, database: str | None, ckpt_path: str) -> tuple[str, dict]:
    """``(name, part)`` of the training database ``database`` in a checkpoint's recipe; None
    picks the only one."""
    if not recipe:
        raise ConfigError(
            f"ckpt={ckpt_path} carries no scoring recipe (eval transform, MOS scale): it was "
            f"saved before checkpoints stored them; retrain it with this version of iqa_lab"
        )
    names = list(recipe["databases"])
    if database is None:
        if len(names) > 1:
            raise ConfigError(
                f"ckpt={ckpt_path} was trained on {names}: pick the database whose transform "
                f"and MOS scale score the images with database=<one of them>"
            )
        database = names[0]
    if database not in names:
        raise ConfigError(f"database={database}: ckpt={ckpt_path} was trained on {names}")
    return database, recipe["databases"][database]
