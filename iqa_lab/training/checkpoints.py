"""Checkpoint selection that survives a resume: ``ResumableCheckpoint``.

Lightning's ``ModelCheckpoint`` restores its selection (best score, top-k models) only when the
resumed run writes to the checkpoint's own folder; a run resumed with
``ckpt_path=<run>/checkpoints/last.ckpt`` into a fresh output folder would then select among the
epochs after the resume only. ``ResumableCheckpoint`` carries the selection over whatever the
folder: the checkpoints it names are copied into the new folder, so the resumed run holds every
checkpoint it selects and never touches the interrupted run's files.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from iqa_lab.files import atomic_path

log = logging.getLogger("iqa_lab")

# The entries of ModelCheckpoint.state_dict that name a checkpoint file.
_PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


class ResumableCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose selection state is restored on resume even when the resumed run
    writes to another folder (module docstring)."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old_dir = state_dict.get("dirpath")
        if old_dir is None or self.dirpath is None or Path(old_dir) == Path(self.dirpath):
            super().load_state_dict(state_dict)
            return
        moved = {
            path: carry_over(path, Path(old_dir), Path(self.dirpath))
            for path in {*state_dict.get("best_k_models", {}), *_named_paths(state_dict)}
        }
        carried = {
            **state_dict,
            "dirpath": self.dirpath,
            "best_k_models": {moved[p]: s for p, s in state_dict.get("best_k_models", {}).items()},
            **{key: moved[state_dict[key]] for key in _PATH_KEYS if state_dict.get(key)},
        }
        log.info(
            "resumed from a checkpoint of %s: its selection (%s, best %s) carried over into %s",
            old_dir,
            self.monitor or "latest epoch",
            carried.get("best_model_score"),
            self.dirpath,
        )
        super().load_state_dict(carried)


def carry_over(path: str, old_dir: Path, new_dir: Path) -> str:
    """``path``, a checkpoint in the interrupted run's folder ``old_dir``, copied to the same place
    under the resumed run's ``new_dir``; a path elsewhere, or a file that no longer exists, is kept
    as it was."""
    source, old_dir, new_dir = Path(path).resolve(), old_dir.resolve(), new_dir.resolve()
    if old_dir == new_dir or old_dir not in source.parents:
        return path
    if not source.is_file():
        log.warning("%s is gone: the resumed run cannot test or keep it", source)
        return path
    target = new_dir / source.relative_to(old_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return str(target)


def _named_paths(state_dict: dict[str, Any]) -> set[str]:
    return {state_dict[key] for key in _PATH_KEYS if state_dict.get(key)}


def selection_checkpoint(trainer: L.Trainer) -> ModelCheckpoint | None:
    """The checkpoint callback that selects on a monitored metric (not the latest-epoch one)."""
    monitored = [c for c in trainer.checkpoint_callbacks if c.monitor is not None]
    return monitored[0] if monitored else None
