"""Training throughput: tokens/s and model FLOPs utilization (MFU), from the model's shape.

MFU = model FLOPs per second / peak FLOP/s of the devices. Model FLOPs count the matmuls of one
forward pass of the encoder-decoder at the batch's shapes, times 3 for forward + backward (PaLM,
appendix B). Re-computation by activation checkpointing is not counted (that would be hardware
FLOPs utilization), and neither are element-wise ops, norms, softmax or embedding lookups.
Attention scores count every query-key pair, causal or not, as in PaLM's ``6N + 12·L·d·T``.
"""

from __future__ import annotations

import time

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from argen.contracts import ModelShape


# -- model FLOPs ------------------------------------------------------------------------------------
def forward_flops(config, text_len: int, target_len: int) -> dict[str, int]:
    """Matmul FLOPs (2 per multiply-add) of one sample's forward pass, by part.

    ``config`` is a :class:`argen.transformer.TransformerConfig` (anything with its fields).
    ``text_len`` and ``target_len`` are the padded lengths the model computes on.
    """
    d, f, S, L = config.d_model, config.d_ff, int(text_len), int(target_len)
    if S < 1 or L < 1:
        raise ValueError(f"text_len and target_len must be >= 1, got {text_len} and {target_len}")
    mlp = 2 * 2 * d * f  # per token: up and down projection
    return {
        # encoder: fused QKV + output projection, bidirectional scores and values, MLP
        "encoder": config.enc_layers * (S * (2 * 4 * d * d + mlp) + 2 * 2 * S * S * d),
        # decoder self-attention: projections and all L x L query-key pairs
        "decoder_self_attention": config.dec_layers * (L * 2 * 4 * d * d + 2 * 2 * L * L * d),
        # cross-attention: Q and output per target token, K and V per text token, L x S scores
        "cross_attention": config.dec_layers * (L * 2 * 2 * d * d + S * 2 * 2 * d * d + 2 * 2 * L * S * d),
        "decoder_mlp": config.dec_layers * L * mlp,
        "head": L * 2 * d * config.target_vocab_size,
    }


def training_flops(config, text_len: int, target_len: int) -> int:
    """Model FLOPs of one training sample: 3x the forward matmuls (the backward pass does two
    matmuls for each forward one: gradients of inputs and of weights)."""
    return 3 * sum(forward_flops(config, text_len, target_len).values())


def flops_per_token(config, text_len: int | None = None, target_len: int | None = None) -> float:
    """Training FLOPs per target token (the encoder's share included) at the given or maximal lengths."""
    S = text_len or config.max_text_len
    L = target_len or config.max_target_len
    return training_flops(config, S, L) / L


# -- peak FLOP/s ------------------------------------------------------------------------------------
# Dense (no sparsity) tensor-core peaks per device, from the vendors' datasheets:
# (name substring, bf16/fp16, tf32, fp32). The first substring found in the lower-cased name wins.
PEAK_FLOPS: list[tuple[str, float, float, float]] = [
    ("gh200", 989e12, 494e12, 67e12),
    ("h200 nvl", 835e12, 418e12, 60e12),
    ("h200", 989e12, 494e12, 67e12),
    ("h100 nvl", 835e12, 418e12, 60e12),
    ("h100 pcie", 756e12, 378e12, 51e12),
    ("h100", 989e12, 494e12, 67e12),  # SXM
    ("h800", 989e12, 494e12, 67e12),
    ("b200", 2250e12, 1100e12, 80e12),
    ("a100", 312e12, 156e12, 19.5e12),
    ("a800", 312e12, 156e12, 19.5e12),
    ("l40s", 362e12, 183e12, 91.6e12),
    ("l40", 181e12, 90.5e12, 90.5e12),
    ("l4", 121e12, 60e12, 30.3e12),
    ("a10g", 70e12, 35e12, 31.2e12),
    ("a10", 125e12, 62.5e12, 31.2e12),
    ("v100", 125e12, 15.7e12, 15.7e12),  # fp16 tensor cores; no bf16
    ("mi300x", 1307e12, 654e12, 163e12),
    ("mi250x", 383e12, 95.7e12, 95.7e12),
]


def peak_flops(device_name: str, precision: str = "bf16-mixed") -> float | None:
    """Peak FLOP/s of one device named ``device_name`` (e.g. ``torch.cuda.get_device_name()``) at a
    Lightning ``precision``; ``None`` when the device is not in :data:`PEAK_FLOPS`."""
    name = device_name.lower()
    p = str(precision)
    column = 1 if ("16" in p and "64" not in p) else (2 if torch.backends.cuda.matmul.allow_tf32 else 3)
    for entry in PEAK_FLOPS:
        if entry[0] in name:
            return entry[column]
    return None


# -- the callback -----------------------------------------------------------------------------------
class Throughput(Callback):
    """Logs training tokens/s and MFU to the trainer's loggers every ``log_every_n_steps`` steps.

    Metrics (all devices together unless named per device): ``perf/tokens_per_s`` (target tokens,
    the decoder's positions), ``perf/samples_per_s``, ``perf/tflops_per_device`` (model TFLOP/s)
    and, where the peak is known, ``perf/mfu``. Rates cover the steps since the previous log, with
    the device synchronised at both ends; validation time is left out.

    The module's side of the contract is :class:`argen.contracts.ModelShape`: the batch shape comes
    from ``pl_module.step_shape = (batch, text_len, target_len)``, set in ``training_step``, and FLOPs
    from ``pl_module.model_config`` (a ``TransformerConfig``). A module without them gets the shape
    from ``batch["text_ids"]`` and its target's ``max_len`` where it has those, and no FLOPs or MFU.

    Args:
        peak_flops: peak FLOP/s of one device; overrides the table (:data:`PEAK_FLOPS`). On CPU
            no MFU is logged unless this is given.
        log_every_n_steps: default: the trainer's ``log_every_n_steps``.
    """

    def __init__(self, peak_flops: float | None = None, log_every_n_steps: int | None = None):
        if peak_flops is not None and peak_flops <= 0:
            raise ValueError(f"Throughput: peak_flops must be > 0 FLOP/s, got {peak_flops}")
        if log_every_n_steps is not None and log_every_n_steps < 1:
            raise ValueError(f"Throughput: log_every_n_steps must be >= 1, got {log_every_n_steps}")
        self.peak_override = peak_flops
        self.log_every_n_steps = log_every_n_steps
        self.peak: float | None = None
        self.metrics: dict[str, float] = {}  # the latest logged values
        self._reset()

    def _reset(self) -> None:
        self._t0: float | None = None
        self._paused = 0.0
        self._pause_start: float | None = None
        self._count = torch.zeros(3, dtype=torch.float64)  # samples, target tokens, model FLOPs

    # -- setup ---------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset()
        device = trainer.strategy.root_device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        self.peak = self.peak_override
        if self.peak is None and device.type == "cuda":
            self.peak = peak_flops(name, str(trainer.precision))
            if self.peak is None:
                rank_zero_info(f"throughput: no peak FLOP/s known for {name!r}: logging tokens/s only "
                               "(pass Throughput(peak_flops=...) for MFU)")
        config = pl_module.model_config if isinstance(pl_module, ModelShape) else None
        per_token = f"{flops_per_token(config) / 1e9:.2f} GFLOP/target token at full length, " if config else ""
        peak = f"peak {self.peak / 1e12:.0f} TFLOP/s per device ({trainer.precision})" if self.peak else "no MFU"
        rank_zero_info(f"throughput: {trainer.world_size} x {name}, {per_token}{peak}")

    # -- counting ------------------------------------------------------------------------------
    @staticmethod
    def batch_shape(pl_module: pl.LightningModule, batch) -> tuple[int, int, int] | None:
        """(batch, text_len, target_len) of the step just taken, or ``None`` if unknown."""
        if isinstance(pl_module, ModelShape) and pl_module.step_shape is not None:
            return tuple(int(x) for x in pl_module.step_shape)
        target = getattr(pl_module, "target", None)  # the fallback: a module that names its target
        if isinstance(batch, dict) and "text_ids" in batch and target is not None:
            B, S = batch["text_ids"].shape
            return B, S, target.max_len
        return None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if self._t0 is None:  # the first step (and any compilation) is warm-up
            self._sync(trainer)
            self._t0, self._last_step = time.perf_counter(), trainer.global_step
            return
        shape = self.batch_shape(pl_module, batch)
        if shape is not None:
            B, S, L = shape
            config = pl_module.model_config if isinstance(pl_module, ModelShape) else None
            flops = training_flops(config, S, L) * B if config is not None else 0.0
            self._count += torch.tensor([B, B * L, flops], dtype=torch.float64)
        every = self.log_every_n_steps or trainer.log_every_n_steps
        step = trainer.global_step
        if step == self._last_step or step % every:
            return
        self._last_step = step
        self._sync(trainer)
        now = time.perf_counter()
        elapsed = now - self._t0 - self._paused
        counts = trainer.strategy.reduce(self._count.to(pl_module.device, copy=True), reduce_op="sum").cpu()
        self._t0, self._paused = now, 0.0
        self._count.zero_()
        if elapsed <= 0 or shape is None:
            return
        samples, tokens, flops = counts.tolist()
        metrics = {"perf/samples_per_s": samples / elapsed, "perf/tokens_per_s": tokens / elapsed}
        if flops:
            per_device = flops / elapsed / trainer.world_size
            metrics["perf/tflops_per_device"] = per_device / 1e12
            if self.peak:
                metrics["perf/mfu"] = per_device / self.peak
        self.metrics = metrics
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)

    # -- validation is not training time -------------------------------------------------------
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._t0 is not None:  # inside the training loop, not the sanity check
            self._pause_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pause_start is not None:
            self._paused += time.perf_counter() - self._pause_start
            self._pause_start = None

    @staticmethod
    def _sync(trainer: pl.Trainer) -> None:
        device = trainer.strategy.root_device
        if device.type == "cuda":
            torch.cuda.synchronize(device)
