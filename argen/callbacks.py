"""Training callbacks that every argen recipe gets."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class Checkpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that always keeps ``last.ckpt`` and also writes it when the run is stopped.

    A SIGTERM (preemption, ``scancel``) or Ctrl-C makes Lightning stop at the next step boundary;
    this callback then saves ``last.ckpt`` so ``--ckpt_path last`` resumes at that very step and a
    stopped run loses nothing it had trained.
    """

    def __init__(self, dirpath: str | None = None, every_n_train_steps: int | None = 500,
                 save_top_k: int = 0, save_last: bool = True, **kwargs):
        super().__init__(dirpath=dirpath, every_n_train_steps=every_n_train_steps,
                         save_top_k=save_top_k, save_last=save_last, **kwargs)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (SIGTERMException, KeyboardInterrupt)) or self.dirpath is None:
            return
        path = Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
        trainer.save_checkpoint(str(path))
        log.warning("run stopped at global step %d: saved %s", trainer.global_step, path)
