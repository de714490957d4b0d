"""Shared fixtures: the real configs composed and shrunk to a tiny synthetic database."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
SHARED = Path(__file__).resolve().parents[2] / "shared"

# 4 photos x 1 crop x 3 distortions x 2 levels (+ pristine) = 28 images of 64 px.
TINY_DATA = [
    "data.photos=[astronaut,coffee,camera,china]",
    "data.crops_per_photo=1",
    "data.crop_size=64",
    "data.distortions=[gaussian_blur,white_noise,jpeg]",
    "data.levels=[1,5]",
    "data.batch_size=4",
    "data.eval_batch_size=4",
    "protocol.train_fraction=0.5",
    "protocol.val_fraction=0.5",
]


def compose_config(config_name: str, overrides: list[str], output_dir: Path, cache_dir: Path):
    """Compose ``conf/<config_name>.yaml`` as the entry point would, outputs in ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # an @hydra.main task never sees this node; ${hydra:...} still resolves
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
        cfg.paths.cache_dir = str(cache_dir)
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One dataset cache for the whole session, so the tiny database is built once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def make_cfg(tmp_path, cache_dir):
    def make(config_name: str = "train", overrides: list[str] | None = None, tiny: bool = True):
        extra = TINY_DATA if tiny else []
        return compose_config(
            config_name, extra + list(overrides or []), tmp_path / "run", cache_dir
        )

    return make
