"""Startup checks of a composed config's numeric keys: batch sizes, crop sizes, fractions, epochs,
learning rates… Every entry point runs ``check_config`` before it reads a file or builds a model,
so ``data.batch_size=0`` stops at once with ``ConfigError`` naming the key, its value and what it
must be, instead of failing later inside torch (or, for ``crop_size: 0``, silently not cropping).

A key that the config lacks is not checked (eval has no callbacks, check no model); ``null`` is
accepted only where the key means "none" (``data.eval_batch_size: null`` = the training batch
size). The data rules apply to ``data`` and to each member database of ``data=mixed``
(``data.databases.<name>``). Nothing in this module imports from iqa_lab but ``errors``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from iqa_lab.errors import ConfigError


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Rule:
    """What a key's value must be: ``test`` passes, described as ``must``; ``nullable``: null is
    allowed too."""

    must: str
    test: Callable[[object], bool]
    nullable: bool = False

    def __call__(self, value) -> bool:
        return (value is None and self.nullable) or (value is not None and self.test(value))

    @property
    def or_null(self) -> Rule:
        return Rule(f"{self.must}, or null", self.test, nullable=True)


def at_least(low: int) -> Rule:
    return Rule(f"a whole number >= {low}", lambda v: _is_int(v) and v >= low)


def fraction(low_open: bool, high_open: bool) -> Rule:
    """A number in (0, 1), [0, 1), (0, 1] or [0, 1]."""
    interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"

    def test(v) -> bool:
        return (
            _is_number(v) and (v > 0 if low_open else v >= 0) and (v < 1 if high_open else v <= 1)
        )

    return Rule(f"a number in {interval}", test)


POSITIVE = at_least(1)
NON_NEGATIVE = at_least(0)
POSITIVE_NUMBER = Rule("a number > 0", lambda v: _is_number(v) and v > 0)
NON_NEGATIVE_NUMBER = Rule("a number >= 0", lambda v: _is_number(v) and v >= 0)
PROBABILITY = fraction(low_open=False, high_open=True)  # dropout: [0, 1)
SIZE_PAIR = Rule(
    "[height, width], two whole numbers >= 1",
    lambda v: (
        isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_int(x) and x >= 1 for x in v)
    ),
)
RANGE = Rule(
    "[low, high] with high > low",
    lambda v: (
        isinstance(v, (list, tuple)) and len(v) == 2 and all(map(_is_number, v)) and v[1] > v[0]
    ),
)
BATCH_LIMIT = Rule(
    "a fraction in [0, 1] of the batches or a whole number of batches >= 0",
    lambda v: (_is_int(v) and v >= 0) or (isinstance(v, float) and 0 <= v <= 1),
)
EXISTING_FILE = Rule(
    "an existing file", lambda v: isinstance(v, str) and Path(v).expanduser().is_file()
)

# Keys of a database config (under data, and under data.databases.<name> for data=mixed).
DATA_RULES: dict[str, Rule] = {
    "batch_size": POSITIVE,
    "eval_batch_size": POSITIVE.or_null,
    "num_workers": NON_NEGATIVE,
    "max_pixels": POSITIVE.or_null,
    "mos_range": RANGE,
    "near_duplicates.thumbnail_size": at_least(2),
    "near_duplicates.block": POSITIVE,
    "imdt.loops": POSITIVE,
    "imdt.epochs_upper": POSITIVE,
    **{
        f"transforms.{stage}.{key}": rule
        for stage in ("train", "eval")
        for key, rule in {
            "crop_size": POSITIVE.or_null,
            "resize_short_side": POSITIVE.or_null,
            "resize": SIZE_PAIR.or_null,
            "pad_to": POSITIVE.or_null,
            "pad_fill": Rule("a whole number in [0, 255]", lambda v: _is_int(v) and 0 <= v <= 255),
        }.items()
    },
}
# data=synthetic's generator.
SYNTHETIC_RULES: dict[str, Rule] = {"crops_per_photo": POSITIVE, "crop_size": POSITIVE}

RULES: dict[str, Rule] = {
    "seed": NON_NEGATIVE,
    # iqa-score (conf/score.yaml)
    "batch_size": POSITIVE,
    "num_workers": NON_NEGATIVE,
    "max_pixels": POSITIVE.or_null,
    "protocol.seed": NON_NEGATIVE,
    "protocol.repeat": NON_NEGATIVE,
    "protocol.repeats": POSITIVE,
    "protocol.train_fraction": fraction(low_open=True, high_open=True),
    "protocol.val_fraction": PROBABILITY,
    "trainer.max_epochs": Rule(
        "a whole number >= 1, or -1 (no limit)", lambda v: _is_int(v) and (v >= 1 or v == -1)
    ),
    "trainer.min_epochs": NON_NEGATIVE.or_null,
    "trainer.check_val_every_n_epoch": POSITIVE.or_null,
    "trainer.log_every_n_steps": POSITIVE,
    "trainer.accumulate_grad_batches": POSITIVE,
    "trainer.limit_train_batches": BATCH_LIMIT.or_null,
    "trainer.limit_val_batches": BATCH_LIMIT.or_null,
    "trainer.limit_test_batches": BATCH_LIMIT.or_null,
    "trainer.reload_dataloaders_every_n_epochs": NON_NEGATIVE,
    "callbacks.early_stopping.patience": NON_NEGATIVE,
    "callbacks.model_checkpoint.save_top_k": at_least(-1),
    "model.optimizer.lr": POSITIVE_NUMBER,
    "model.optimizer.weight_decay": NON_NEGATIVE_NUMBER,
    "model.head_lr_multiplier": POSITIVE_NUMBER,
    "model.head.hidden": POSITIVE,
    "model.head.dropout": PROBABILITY,
    "model.backbone.drop_rate": PROBABILITY,
    "model.backbone.checkpoint": EXISTING_FILE.or_null,
    "model.init_from": EXISTING_FILE.or_null,
    "model.niqe.patch_size": at_least(2),
    "model.niqe.sharpness": fraction(low_open=True, high_open=False),
    "model.brisque_svr.epsilon": POSITIVE_NUMBER,
    "evaluation.quantile": fraction(low_open=True, high_open=True),
    "evaluation.resamples": NON_NEGATIVE,
    "evaluation.level": fraction(low_open=True, high_open=True),
    # iqa-explain (conf/explain.yaml)
    "overlay.image_weight": fraction(low_open=False, high_open=False),
    "overlay.min_side": NON_NEGATIVE,
    "contact_sheet.columns": POSITIVE,
    "contact_sheet.tile": at_least(16),
    # python -m iqa_lab.data.check
    "workers": POSITIVE.or_null,
    "show": NON_NEGATIVE,
}

_MISSING = object()


def _value(cfg: DictConfig, key: str):
    value = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
    if isinstance(value, DictConfig) or OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _data_nodes(cfg: DictConfig) -> list[str]:
    """``data`` and, under data=mixed, ``data.databases.<name>``."""
    databases = OmegaConf.select(cfg, "data.databases", default=None)
    members = list(databases) if isinstance(databases, DictConfig) else []
    return ["data"] + [f"data.databases.{name}" for name in members]


def _rules(cfg: DictConfig) -> dict[str, Rule]:
    rules = dict(RULES)
    for node in _data_nodes(cfg):
        rules.update({f"{node}.{key}": rule for key, rule in DATA_RULES.items()})
        if str(OmegaConf.select(cfg, f"{node}._target_", default="")).endswith(
            "SyntheticDataModule"
        ):
            rules.update({f"{node}.{key}": rule for key, rule in SYNTHETIC_RULES.items()})
    return rules


def config_problems(cfg: DictConfig) -> list[str]:
    """``key=value: must be …`` for every checked key whose value is wrong."""
    problems = []
    for key, rule in _rules(cfg).items():
        value = _value(cfg, key)
        if value is _MISSING or rule(value):
            continue
        shown = "null" if value is None else value
        problems.append(f"{key}={shown} must be {rule.must}")
    return problems


def check_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` naming every checked key whose value cannot work."""
    problems = config_problems(cfg)
    if problems:
        raise ConfigError(
            f"{'; '.join(problems)}: set {'it' if len(problems) == 1 else 'them'} in the config "
            f"or on the command line (key=value)"
        )
