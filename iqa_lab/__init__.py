"""iqa_lab: an experiment platform for blind image quality assessment research."""

import os

from omegaconf import OmegaConf

from iqa_lab import resolvers

__version__ = "0.1.0"

# conf/paths: the folder a command is launched from (runs never change directory). Hydra's
# ${hydra:runtime.cwd} names the same folder but cannot be resolved where Hydra's sweeper names a
# multirun's folder (hydra.sweep.dir), which made every `-m` run from the command line fail.
OmegaConf.register_new_resolver("launch_dir", os.getcwd, replace=True)
resolvers.register()
