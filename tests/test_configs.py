"""Every config in conf/ composes, and the main objects instantiate from it."""

from pathlib import Path

import hydra
import pytest

from iqa_lab.config_checks import check_config
from tests.conftest import CONF_DIR

GROUPS = [
    "data",
    "model",
    "protocol",
    "trainer",
    "logger",
    "callbacks",
    "experiment",
    "hparams_search",
    "debug",
]


def _options(group: str) -> list[str]:
    """Selectable options; files named ``_*.yaml`` are parts that options include."""
    return sorted(
        p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml") if not p.stem.startswith("_")
    )


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_group_option_composes(make_cfg, group, option):
    cfg = make_cfg("train", [f"{group}={option}"], tiny=False)
    assert cfg.paths.output_dir
    assert cfg.data._target_ and cfg.model._target_ and cfg.trainer._target_
    check_config(cfg)  # and passes the startup checks of its numeric keys


def test_every_group_has_options():
    for group in GROUPS:
        assert _options(group), f"conf/{group}/ is empty"


def test_eval_config_requires_checkpoint(make_cfg):
    # A checkpoint, or a model that needs none (model=classical); neither is refused by eval.
    from iqa_lab.eval import evaluate

    cfg = make_cfg("eval", [])
    assert cfg.ckpt_path is None and cfg.get("model") is None
    with pytest.raises(ValueError, match="eval needs ckpt_path="):
        evaluate(cfg)


def test_datamodule_model_and_trainer_instantiate(make_cfg):
    cfg = make_cfg("train", ["model.backbone.pretrained=false"])
    datamodule = hydra.utils.instantiate(cfg.data, protocol=cfg.protocol)
    model = hydra.utils.instantiate(cfg.model)
    trainer = hydra.utils.instantiate(cfg.trainer)
    assert datamodule.name == "synthetic"
    assert model.backbone.name == "tf_efficientnet_lite0"
    assert trainer.max_epochs == cfg.trainer.max_epochs


def test_experiment_holds_only_deltas():
    """An experiment file overrides groups and values; it never redefines a whole group."""
    for path in (Path(CONF_DIR) / "experiment").glob("*.yaml"):
        text = path.read_text()
        assert text.startswith("# @package _global_"), path
        assert "_target_" not in text, f"{path} redefines a component instead of overriding it"
