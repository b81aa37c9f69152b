"""Stage 2 training: the encoder-decoder learns to write a target tokenizer's tokens from text.

The network is built in ``configure_model`` from the data module's text tokenizer and the target's
vocabulary, so a recipe names an architecture and a target, never vocabulary sizes (and FSDP can
shard the network as it is built).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from argen.contracts import TextData
from argen.export import save_bundle
from argen.generator import Generator
from argen.grid import image_grid
from argen.optim import adamw, param_groups, warmup_cosine
from argen.sampling_config import SamplingConfig
from argen.targets import TargetTokenizer
from argen.transformer.drafts import FILE as DRAFTS_FILE
from argen.transformer.drafts import CorpusDrafts
from argen.transformer.model import EncoderDecoder, config_from_preset


class Seq2SeqModule(pl.LightningModule):
    """Teacher-forced cross-entropy on target tokens, with classifier-free-guidance text dropout.

    Args:
        target: what the decoder writes (``argen.vqgan.ImageTarget``, ``argen.svg.SVGTokenizer``).
        preset: a name from ``argen.transformer.model.PRESETS``; ``arch`` overrides its fields.
        cfg_dropout: share of training captions replaced by the empty caption, so the same network
            also models p(target) and sampling can use classifier-free guidance.
        prefix_loss_weight, prefix_loss_tokens: the training loss of each row's first
            ``prefix_loss_tokens`` targets counts ``prefix_loss_weight`` times. Those are the tokens
            only the caption can decide (an SVG plan's first tokens); later ones follow from the
            prefix, and their far larger share of the loss teaches the decoder to continue drawings
            before it learns to read captions (docs/eval.md). Validation loss stays unweighted.
        sample_every_n_steps: log a captioned grid of samples this often (0: never).
        sampling: default sampling settings stored in the export (``cfg_scale``, ``temperature``,
            ``top_k``, ``top_p``; ``null`` or ``off`` for no filter), read by
            :class:`argen.sampling_config.SamplingConfig`; ``Generator.generate`` uses them when not
            told otherwise.
    """

    def __init__(self, target: TargetTokenizer, preset: str = "demo", arch: dict | None = None,
                 lr: float = 3e-4, betas: tuple[float, float] = (0.9, 0.95), weight_decay: float = 0.01,
                 warmup_steps: int = 200, min_lr_ratio: float = 0.1, cfg_dropout: float = 0.1,
                 sample_every_n_steps: int = 0, sample_prompts: list[str] | None = None,
                 sampling: dict | None = None, compile: bool = False, prefix_loss_weight: float = 1.0,
                 prefix_loss_tokens: int = 0):
        super().__init__()
        if not prefix_loss_weight > 0 or prefix_loss_tokens < 0:
            raise ValueError(f"prefix_loss_weight must be > 0 and prefix_loss_tokens ≥ 0, got "
                             f"{prefix_loss_weight} and {prefix_loss_tokens}")
        self.save_hyperparameters(ignore=["target"])
        self.target = target
        self.net: EncoderDecoder | None = None
        self.text_tokenizer = None
        self.sampling = SamplingConfig.from_dict(sampling)  # a bad setting fails here, not at export
        self._val_counts: torch.Tensor | None = None
        self.step_shape: tuple[int, int, int] | None = None

    # -- building ---------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self.net is None:
            dm = self.trainer.datamodule
            if not isinstance(dm, TextData):
                raise TypeError(f"Seq2SeqModule builds its network from the data module's text_tokenizer and "
                                f"max_text_len (argen.contracts.TextData, e.g. argen.data.ShardDataModule); "
                                f"got {type(dm).__name__}")
            self.build(dm.text_tokenizer, dm.max_text_len)

    def build(self, text_tokenizer, max_text_len: int) -> EncoderDecoder:
        """Create the network for this text tokenizer and the target (``configure_model`` calls it)."""
        self.text_tokenizer = text_tokenizer
        config = config_from_preset(
            self.hparams.preset,
            **{
                "text_vocab_size": text_tokenizer.vocab_size,
                "max_text_len": max_text_len,
                "target_vocab_size": self.target.vocab_size,
                "max_target_len": self.target.max_len,
                "target_feature_sizes": tuple(self.target.feature_sizes),
                **(self.hparams.arch or {}),
            },
        )
        if config.text_vocab_size < text_tokenizer.vocab_size:
            raise ValueError(f"arch.text_vocab_size={config.text_vocab_size} is smaller than the text "
                             f"tokenizer's vocabulary ({text_tokenizer.vocab_size})")
        self.net = EncoderDecoder(config)
        if config.feature_head:
            self.net.set_id_features(self.target.id_features())
        if self.hparams.compile:
            self.net = torch.compile(self.net)
        return self.net

    def setup(self, stage: str) -> None:
        self.target = self.target.to(self.device)

    def on_fit_start(self) -> None:
        self.target = self.target.to(self.device)

    @property
    def model_config(self):
        """The network's config (``argen.contracts.ModelShape``, read by ``argen.throughput.Throughput``)."""
        return getattr(self.net, "_orig_mod", self.net).config

    # -- one step ---------------------------------------------------------------------------
    def _null_text(self, text_ids: torch.Tensor, text_mask: torch.Tensor, drop: torch.Tensor):
        """Replace the rows where ``drop`` is True by the empty caption (the CFG unconditional)."""
        null_ids, null_mask = self.text_tokenizer.encode([""], max_len=text_ids.shape[1])
        width = null_ids.shape[1]
        ids, mask = text_ids.clone(), text_mask.clone()
        ids[drop] = self.text_tokenizer.pad_id
        mask[drop] = False
        ids[drop, :width] = null_ids.to(ids.device)
        mask[drop, :width] = null_mask.to(mask.device)
        return ids, mask

    def cfg_dropout(self, text_ids: torch.Tensor, text_mask: torch.Tensor, rate: float):
        """Each row independently becomes the empty caption with probability ``rate``."""
        if rate <= 0:
            return text_ids, text_mask
        drop = torch.rand(text_ids.shape[0], device=text_ids.device) < rate
        return self._null_text(text_ids, text_mask, drop)

    def _loss(self, batch, cfg_dropout: float = 0.0, prefix_weight: float = 1.0, prefix_tokens: int = 0):
        targets = self.target.encode_batch(batch).to(self.device)
        text_ids, text_mask = self.cfg_dropout(batch["text_ids"], batch["text_mask"], cfg_dropout)
        if self.target.pad_id is not None:
            # A sample the target skipped (too long, unparsable) is an all-PAD row: it carries no loss,
            # so it is dropped here rather than run through the network (after the dropout draw, so
            # the random stream does not depend on what was skipped).
            kept = (targets != self.target.pad_id).any(dim=1)
            if not kept.any():
                kept[0] = True  # keep one row so the step still has a graph (its loss is 0 below)
            if not kept.all():
                targets, text_ids, text_mask = targets[kept], text_ids[kept], text_mask[kept]
        net = self.net
        inputs = getattr(net, "_orig_mod", net).shift_right(targets)
        positions = torch.arange(inputs.shape[1], device=inputs.device)
        features = self.target.token_features(inputs, positions)
        logits = net(text_ids, text_mask, inputs, features)
        ignore = self.target.pad_id if self.target.pad_id is not None else -100
        nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=ignore,
                              reduction="none").view_as(targets)
        weight = (targets != ignore).float()
        weight[:, :prefix_tokens] *= prefix_weight
        return (nll * weight).sum() / weight.sum().clamp(min=1), targets

    def training_step(self, batch, batch_idx):
        h = self.hparams
        loss, targets = self._loss(batch, h.cfg_dropout, h.prefix_loss_weight, h.prefix_loss_tokens)
        # (batch, text length, target length): argen.throughput.Throughput turns it into tokens/s, MFU.
        self.step_shape = (targets.shape[0], batch["text_ids"].shape[1], targets.shape[1])
        self.log_dict({"train/loss": loss, "train/bits_per_token": loss / math.log(2),
                       "lr": self.trainer.optimizers[0].param_groups[0]["lr"]}, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        every = self.hparams.sample_every_n_steps
        if every and self.global_step % every == 0 and self.trainer.is_global_zero:
            self.log_samples(batch)

    # -- validation: bits/token against the entropy of the marginal token distribution ------
    def on_validation_epoch_start(self) -> None:
        self._val_counts = torch.zeros(self.target.vocab_size, dtype=torch.float64, device=self.device)

    def validation_step(self, batch, batch_idx):
        loss, targets = self._loss(batch)
        valid = targets if self.target.pad_id is None else targets[targets != self.target.pad_id]
        self._val_counts += torch.bincount(valid.flatten(), minlength=self.target.vocab_size).double()
        self.log("val/loss", loss, sync_dist=True)
        self.log("val/bits_per_token", loss / math.log(2), prog_bar=True, sync_dist=True)
        return loss

    def on_validation_epoch_end(self) -> None:
        counts = self.trainer.strategy.reduce(self._val_counts, reduce_op="sum")
        p = counts[counts > 0] / counts.sum()
        self.log("val/marginal_entropy_bits", float(-(p * p.log2()).sum()), sync_dist=False)

    # -- optimisation -----------------------------------------------------------------------
    def configure_optimizers(self):
        h = self.hparams
        opt = adamw(param_groups(self.net, h.weight_decay), lr=h.lr, betas=tuple(h.betas), device=self.device)
        total = self.trainer.max_steps if self.trainer.max_steps > 0 else self.trainer.estimated_stepping_batches
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(h.warmup_steps, int(total), h.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- samples and export -----------------------------------------------------------------
    def generator(self):
        """An :class:`argen.Generator` over the in-memory network (no export round trip)."""
        return Generator(getattr(self.net, "_orig_mod", self.net), self.text_tokenizer, self.target,
                         sampling=self.sampling)

    @torch.no_grad()
    def log_samples(self, batch) -> None:
        prompts = list(self.hparams.sample_prompts or batch["caption"][:8])
        was_training = self.net.training
        self.net.eval()
        outputs = self.generator().generate(prompts, num_samples=2, seed=0)
        self.net.train(was_training)
        images = [o for per_prompt in outputs for o in per_prompt]
        captions = [p for p in prompts for _ in range(2)]
        grid = image_grid(images, captions, ncol=8)
        out = Path(self.trainer.default_root_dir) / "samples" / f"step{self.global_step:07d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        grid.save(out)
        logger = self.logger
        if logger is not None and hasattr(logger, "log_image"):
            logger.log_image("samples", [grid], step=self.global_step, caption=[f"step {self.global_step}"])

    def export(self, directory: str | Path, state_dict: dict | None = None,
               corpus: CorpusDrafts | None = None) -> Path:
        """Write the safetensors bundle ``argen.Generator.from_pretrained`` loads.

        ``state_dict``: the module's full state (keys ``net.…``) when it had to be gathered first (FSDP).
        ``corpus``: training target sequences that speculative decoding drafts from, saved beside.
        """
        directory = Path(directory)
        net = getattr(self.net, "_orig_mod", self.net)
        if state_dict is None:
            state_dict = {f"net.{k}": v for k, v in net.state_dict().items()}
        weights = {k.removeprefix("net.").replace("_orig_mod.", ""): v
                   for k, v in state_dict.items() if k.startswith("net.")}
        config = {"transformer": net.config.to_dict(), "sampling": self.sampling.to_dict(),
                  "text_tokenizer": "text_tokenizer.json", "target": "target",
                  "max_text_len": net.config.max_text_len}
        save_bundle(directory, "generator", config, weights)
        self.text_tokenizer.save(directory / "text_tokenizer.json")
        if (directory / "target").exists():
            shutil.rmtree(directory / "target")
        self.target.save_pretrained(directory / "target")
        (directory / DRAFTS_FILE).unlink(missing_ok=True)  # an earlier export's, in the same folder
        if corpus is not None:
            corpus.save(directory)
        return directory
