"""Callbacks that SIGKILL their own process, for the kill-and-resume tests (added to a run with
``+callbacks.kill._target_=tests.killer.KillAtEpoch +callbacks.kill.epoch=N`` or
``+callbacks.kill._target_=tests.killer.KillAtStep +callbacks.kill.step=N``)."""

import os
import signal

from lightning.pytorch.callbacks import Callback


class KillAtEpoch(Callback):
    """Kills the process at the second training batch of epoch ``epoch``: mid-epoch, mid-loop."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 1:
            os.kill(os.getpid(), signal.SIGKILL)


class KillAtStep(Callback):
    """Kills the process before optimizer step ``step`` (counted over the run from 0)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
