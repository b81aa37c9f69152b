"""Lightning training of the ViT-VQGAN: manual optimization of generator and discriminator.

Generator and discriminator share ONE optimizer (a parameter group each, with its own learning rate
and gradient clipping) and ONE backward pass per batch:

- the generator's adversarial term runs the discriminator with *detached* weights, so it trains the
  generator only; the discriminator's loss sees the reconstruction detached, so it trains the
  discriminator only. Summed, one backward gives each network exactly its own gradients;
- one ``step()`` per batch keeps ``trainer.max_steps`` counting batches (Lightning counts every
  ``optimizer.step()`` as a global step under manual optimization);
- one backward per forward is what DDP's gradient reducer expects.
"""

from __future__ import annotations

import copy
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure

from argen.grid import image_grid
from argen.images import to_pil
from argen.optim import adamw, param_groups, warmup_cosine
from argen.vqgan import losses
from argen.vqgan.discriminator import Discriminator
from argen.vqgan.model import VQGAN, VQGANConfig
from argen.vqgan.target import ImageTokenizer, code_stats


class VQGANModule(pl.LightningModule):
    """Trains :class:`~argen.vqgan.model.VQGAN`; ``export(dir)`` writes an :class:`ImageTokenizer` bundle.

    Args:
        config: the model (sizes, codebook, pixel head).
        l2_weight, logit_laplace_weight, perceptual_weight, adversarial_weight: loss weights
            (paper: 1.0 / 0.1 / 0.1 / 0.1; Parti dropped logit-laplace). The VQ loss's commitment
            weight is ``config.commitment_weight``.
        adversarial_loss: ``"hinge"`` or ``"non_saturating"``.
        disc_start: batch at which the discriminator and the adversarial loss switch on.
        adaptive_disc_weight: scale the adversarial term by VQGAN's gradient-norm ratio.
        r1_weight: gamma of the R1 penalty (loss += gamma / 2 * E||grad D(real)||^2); 0 turns it off.
        lr, min_lr, warmup_steps: linear warmup to ``lr``, then cosine to ``min_lr`` at max_steps.
        disc_lr: discriminator learning rate (default ``lr``).
        grad_clip: max gradient norm of each network (0: off).
        ema_decay: keep an exponential moving average of the weights for validation and export (0: off).
        grid_images: how many validation images the logged reconstruction grid shows.
        cpu_threads: on CPU, ``torch.set_num_threads`` at fit start (None: leave the default). Tiny
            models gain little from intra-op threads, and spinning threads collapse (10x here) when
            other processes share the cores: the CPU demo uses 1.
        compile: ``torch.compile`` the encoder's and decoder's transformer stacks, in place, so
            checkpoints and exports keep their keys. The quantizer stays eager: its k-means init and
            dead-code replacement are data-dependent.
    """

    def __init__(
        self,
        config: VQGANConfig | None = None,
        l2_weight: float = 1.0,
        logit_laplace_weight: float = 0.0,
        perceptual_weight: float = 0.0,
        adversarial_weight: float = 0.0,
        adversarial_loss: str = "hinge",
        disc_start: int = 0,
        adaptive_disc_weight: bool = False,
        r1_weight: float = 10.0,
        disc_width: int = 64,
        lr: float = 1e-4,
        min_lr: float = 5e-5,
        warmup_steps: int = 50_000,
        weight_decay: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        disc_lr: float | None = None,
        grad_clip: float = 1.0,
        ema_decay: float = 0.0,
        grid_images: int = 8,
        cpu_threads: int | None = None,
        compile: bool = False,
    ):
        super().__init__()
        if isinstance(config, dict):  # load_from_checkpoint passes the saved dict back
            config = VQGANConfig.from_dict(config)
        config = config or VQGANConfig()
        if adversarial_loss not in ("hinge", "non_saturating"):
            raise ValueError(f"adversarial_loss must be 'hinge' or 'non_saturating', got {adversarial_loss!r}")
        if logit_laplace_weight > 0 and not config.logit_laplace:
            raise ValueError("logit_laplace_weight > 0 needs config.logit_laplace: true (the decoder must "
                             "predict a per-pixel scale)")
        if not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay}")
        self.save_hyperparameters(ignore=["config"])
        self.hparams["config"] = config.to_dict()  # plain types: checkpoints load with weights_only=True
        self.automatic_optimization = False
        self.config = config
        self.model = VQGAN(config)
        self.ema = copy.deepcopy(self.model).requires_grad_(False) if ema_decay > 0 else None
        self.disc = (Discriminator(config.image_size, config.channels, width=disc_width)
                     if adversarial_weight > 0 else None)
        self.perceptual: losses.PerceptualLoss | None = None  # built in setup(): it may need a download
        self._val: dict = {}
        self._synced = False

        # The frozen LPIPS network is rebuilt from its package, never saved in (or loaded from) checkpoints.
        self.strict_loading = perceptual_weight == 0

    def configure_model(self) -> None:
        """Under DDP, share codebook updates across ranks (the process group exists by now); compile."""
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 and not self._synced:
            self.model.sync_codebook_across_ranks()
            self._synced = True
        if self.hparams.compile:  # idempotent: compiling a module again replaces its compiled call
            self.model.encoder.transformer.compile()
            self.model.decoder.transformer.compile()

    def setup(self, stage: str) -> None:
        if self.hparams.cpu_threads and self.trainer.strategy.root_device.type == "cpu":
            torch.set_num_threads(self.hparams.cpu_threads)
        if stage == "fit" and self.hparams.perceptual_weight > 0 and self.perceptual is None:
            self.perceptual = losses.PerceptualLoss()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith("perceptual.")]:
            del state[key]

    # -- training ---------------------------------------------------------------------------------
    def generator_loss(self, x: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """x in [-1, 1] -> (total generator loss, reconstruction in [-1, 1], logs)."""
        h = self.hparams
        out, ids, vq_loss = self.model(x)
        recon = self.model.pixels(out)
        rec = F.mse_loss(recon.float(), x.float())
        loss = h.l2_weight * rec + vq_loss
        logs = {"l2": rec, "vq": vq_loss, "psnr": 10 * torch.log10(4 / rec.detach().clamp_min(1e-10))}
        if h.logit_laplace_weight > 0:
            logs["logit_laplace"] = nll = losses.logit_laplace_nll(out, (x + 1) / 2)
            loss = loss + h.logit_laplace_weight * nll
        if self.perceptual is not None:
            logs["perceptual"] = p = self.perceptual(recon, x)
            loss = loss + h.perceptual_weight * p
        if self.disc is not None and step >= h.disc_start:
            frozen = {name: p.detach() for name, p in self.disc.named_parameters()}
            fake_logits = torch.func.functional_call(self.disc, frozen, (recon,))
            logs["g_adv"] = adv = losses.g_loss(fake_logits, h.adversarial_loss)
            weight = h.adversarial_weight
            if h.adaptive_disc_weight:
                nll = loss - vq_loss
                logs["disc_weight"] = w = losses.adaptive_weight(nll, adv, self.model.last_layer())
                weight = weight * w
            loss = loss + weight * adv
        logs["codes_in_batch"] = torch.tensor(float(ids.unique().numel()))
        return loss, recon, logs

    def discriminator_loss(self, x: torch.Tensor, recon: torch.Tensor) -> tuple[torch.Tensor, dict]:
        h = self.hparams
        real = x.detach().requires_grad_(h.r1_weight > 0)
        real_logits = self.disc(real)
        fake_logits = self.disc(recon.detach())
        loss = losses.d_loss(real_logits, fake_logits, h.adversarial_loss)
        logs = {"d_loss": loss.detach(), "d_real": real_logits.mean().detach(), "d_fake": fake_logits.mean().detach()}
        if h.r1_weight > 0:
            logs["r1"] = r1 = losses.r1_penalty(real_logits, real)
            loss = loss + h.r1_weight / 2 * r1
        return loss, logs

    def training_step(self, batch: dict, batch_idx: int) -> None:
        h = self.hparams
        opt = self.optimizers()
        sched = self.lr_schedulers()
        x = _images(batch) * 2 - 1
        step = self.global_step
        loss, recon, logs = self.generator_loss(x, step)
        total = loss
        gan = self.disc is not None and step >= h.disc_start
        if gan:
            d_loss, d_logs = self.discriminator_loss(x, recon)
            total = total + d_loss
            logs.update(d_logs)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(total)
        if h.grad_clip > 0:
            logs["grad_norm"] = torch.nn.utils.clip_grad_norm_(list(self.model.parameters()), h.grad_clip)
            if gan:
                logs["d_grad_norm"] = torch.nn.utils.clip_grad_norm_(list(self.disc.parameters()), h.grad_clip)
        opt.step()
        sched.step()
        if self.ema is not None:
            self._update_ema()
        cb = self.model.quantizer._codebook
        threshold = max(self.config.dead_code_threshold, 1.0)
        logs["dead_codes"] = (cb.cluster_size < threshold).sum().float()
        logs["lr"] = torch.tensor(sched.get_last_lr()[0])
        self.log_dict({f"train/{k}": v.detach().float() for k, v in logs.items()}, prog_bar=False)
        self.log("train/loss", loss.detach(), prog_bar=True)
        self.log("train/psnr_db", logs["psnr"], prog_bar=True)

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = self.hparams.ema_decay
        for e, p in zip(self.ema.parameters(), self.model.parameters()):
            e.lerp_(p.detach(), 1 - d)
        for e, b in zip(self.ema.buffers(), self.model.buffers()):
            e.copy_(b)  # the codebook is already an EMA; copy it (and k-means state) as is

    def configure_optimizers(self):
        h = self.hparams
        groups = param_groups(self.model, h.weight_decay)
        if self.disc is not None:
            groups.append({"params": list(self.disc.parameters()), "weight_decay": 0.0, "lr": h.disc_lr or h.lr})
        opt = adamw(groups, lr=h.lr, betas=tuple(h.betas), weight_decay=h.weight_decay, device=self.device)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        schedule = warmup_cosine(h.warmup_steps, total, h.min_lr / h.lr)
        return [opt], [{"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, schedule), "interval": "step"}]

    # -- validation -------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val = {"counts": torch.zeros(self.config.codebook_size, device=self.device, dtype=torch.long),
                     "psnr": [], "ssim": [], "grid": None}

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        model = self.ema if self.ema is not None else self.model
        x = _images(batch)
        out, ids, _ = model(x * 2 - 1)
        recon = ((model.pixels(out).float().clamp(-1, 1) + 1) / 2)
        mse = (recon - x.float()).pow(2).flatten(1).mean(1)
        self._val["psnr"].append(-10 * torch.log10(mse.clamp_min(1e-10)))
        self._val["ssim"].append(structural_similarity_index_measure(recon, x.float(), data_range=1.0,
                                                                     reduction="none"))
        self._val["counts"] += torch.bincount(ids.flatten(), minlength=self.config.codebook_size)
        if self._val["grid"] is None:
            n = self.hparams.grid_images
            # originals on the top row, their reconstructions below
            self._val["grid"] = image_grid(to_pil(x[:n]) + to_pil(recon[:n]), ncol=n, cell=96)

    def on_validation_epoch_end(self) -> None:
        v = self._val
        if not v.get("psnr"):
            return
        stats = code_stats(v["counts"])
        self.log_dict({"val/psnr": torch.cat(v["psnr"]).mean(), "val/ssim": torch.cat(v["ssim"]).mean(),
                       "val/usage": stats["usage"], "val/perplexity": stats["perplexity"],
                       "val/unused_codes": float(stats["unused_codes"])}, sync_dist=True)
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        grid = v["grid"]
        root = Path(self.trainer.default_root_dir) / "reconstructions"
        root.mkdir(parents=True, exist_ok=True)
        grid.save(root / f"step-{self.global_step:07d}.png")
        logger = self.logger
        if logger is not None and hasattr(logger, "log_image"):
            logger.log_image(key="val/reconstructions", images=[grid], step=self.global_step,
                             caption=["originals (top) / reconstructions (bottom)"])

    # -- export -----------------------------------------------------------------------------------
    def tokenizer(self) -> ImageTokenizer:
        """The trained tokenizer (EMA weights when ``ema_decay`` > 0), in eval mode, on CPU."""
        model = copy.deepcopy(self.ema if self.ema is not None else self.model).cpu().float().eval()
        return ImageTokenizer(model)

    def export(self, directory: str | Path) -> None:
        self.tokenizer().save_pretrained(directory)


def _images(batch: dict) -> torch.Tensor:
    if "image" not in batch:
        raise KeyError(f"VQGAN training needs batch['image'] (B, 3, H, W) in [0, 1]; batch has {sorted(batch)}"
                       " (set load_image: true in the data module)")
    return batch["image"]
