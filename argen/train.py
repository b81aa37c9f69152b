"""``python -m argen.train``: LightningCLI over any argen LightningModule and data module.

Recipes are plain LightningCLI YAML (``-c recipe.yaml``) with dotted overrides
(``--model.init_args.lr 3e-4 --trainer.max_steps 100``). Every run gets:

- a W&B logger in offline mode (nothing prompts, nothing needs a network; ``wandb sync`` later, or
  ``--trainer.logger.init_args.offline false`` to stream live),
- ``<default_root_dir>/checkpoints/last.ckpt`` kept up to date and written on SIGTERM, so
  ``--ckpt_path last`` resumes a stopped run,
- tokens/s and MFU logged by :class:`argen.throughput.Throughput` (``--throughput.peak_flops`` to override),
- an export bundle at ``<default_root_dir>/export`` after ``fit`` when the module has ``export(dir)``,
  with the training targets speculative decoding drafts from where the target keeps some (SVG).
"""

from __future__ import annotations

from argen.omp import prefer_passive_wait

prefer_passive_wait()  # before anything loads torch (see argen/omp.py)

import logging
import os
from pathlib import Path

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

from argen.callbacks import Checkpoint
from argen.throughput import Throughput
from argen.transformer.drafts import CorpusDrafts

log = logging.getLogger("argen.train")

DEFAULT_LOGGER = {
    "class_path": "lightning.pytorch.loggers.WandbLogger",
    "init_args": {"project": "argen", "offline": True},
}


class ArgenCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(Checkpoint, "checkpoint")
        parser.add_lightning_class_args(Throughput, "throughput")

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        root = config.trainer.default_root_dir or os.getcwd()
        config.trainer.default_root_dir = root
        if config.checkpoint.dirpath is None:
            config.checkpoint.dirpath = str(Path(root) / "checkpoints")
        logger = config.trainer.logger
        # Keep W&B's files with the run instead of in whatever folder the user launched from.
        if getattr(logger, "class_path", "").endswith("WandbLogger"):
            if logger.init_args.get("save_dir") in (None, "."):
                logger.init_args["save_dir"] = root
            Path(root).mkdir(parents=True, exist_ok=True)

    def after_fit(self) -> None:
        export = getattr(self.model, "export", None)
        if export is None:
            return
        if self.trainer.interrupted:
            log.warning("fit was interrupted: no export written (resume with --ckpt_path last)")
            return
        state = _full_state_dict(self.trainer.strategy)  # collective under FSDP: every rank calls it
        if self.trainer.is_global_zero:
            directory = Path(self.trainer.default_root_dir) / "export"
            kwargs = {} if state is None else {"state_dict": state}
            corpus = _draft_corpus(self.model, self.datamodule)
            if corpus is not None:
                kwargs["corpus"] = corpus
            export(directory, **kwargs)
            log.info("exported %s", directory)
            print(f"argen: export bundle written to {directory}")


def _draft_corpus(model, datamodule):
    """The training targets an export keeps for speculative drafts, where its target wants some
    (``draft_corpus_tokens``) and the data module can list them; else None."""
    budget = getattr(getattr(model, "target", None), "draft_corpus_tokens", 0)
    if not budget or getattr(datamodule, "target_sequences", None) is None:
        return None
    sequences = datamodule.target_sequences(model.target, budget)
    if not sequences:
        return None
    log.info("kept %d training sequences (%d tokens) for speculative drafts", len(sequences),
             sum(map(len, sequences)))
    return CorpusDrafts(sequences)


def _full_state_dict(strategy) -> dict | None:
    """The unsharded module state under FSDP (gathered to rank 0, on CPU); ``None`` elsewhere."""
    from lightning.pytorch.strategies import FSDPStrategy  # function-level: loads torch.distributed

    if not isinstance(strategy, FSDPStrategy):
        return None
    # function-level: only under FSDP (torch builds without distributed support lack the module)
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    config = FullStateDictConfig(offload_to_cpu=True, rank0_only=True)
    with FSDP.state_dict_type(strategy.model, StateDictType.FULL_STATE_DICT, config):
        return strategy.model.state_dict()


def main(args: list[str] | None = None, run: bool = True) -> ArgenCLI:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return ArgenCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults={"logger": DEFAULT_LOGGER},
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"description": __doc__},
        args=args,
        run=run,
    )


if __name__ == "__main__":
    main()
