"""Optimizers and LR schedules shared by both stages."""

from __future__ import annotations

import logging
import math

import torch

log = logging.getLogger(__name__)


def adamw(params, lr: float, betas: tuple[float, float] = (0.9, 0.95), weight_decay: float = 0.0,
          device: torch.device | str = "cpu") -> torch.optim.Optimizer:
    """AdamW with the fastest kernel available: Apex FusedAdam on CUDA when importable, else
    PyTorch's fused AdamW on CUDA, else the default (foreach) CPU implementation."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        try:  # function-level: Apex is optional (CUDA builds only)
            from apex.optimizers import FusedAdam

            log.info("optimizer: apex FusedAdam")
            return FusedAdam(params, lr=lr, betas=betas, weight_decay=weight_decay, adam_w_mode=True)
        except ImportError:
            pass
    log.info("optimizer: torch AdamW%s", " (fused)" if cuda else "")
    return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=cuda or None)


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float = 0.1):
    """LR multiplier: linear warmup to 1, then cosine decay to ``min_ratio`` at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


DECAYED = (torch.nn.Linear, torch.nn.Embedding, torch.nn.modules.conv._ConvNd)


def param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """The one weight-decay rule of both stages: decay the weights of linear, embedding and
    convolution layers; norms, biases and free parameters (e.g. learned positions) stay undecayed.

    Chosen by module type, not tensor rank: FSDP flattens parameters, so rank says nothing there.
    """
    decay, no_decay, seen = [], [], set()
    for m in module.modules():
        for name, p in m.named_parameters(recurse=False):
            if p.requires_grad and id(p) not in seen:  # tied weights appear in two modules
                seen.add(id(p))
                matrix = isinstance(m, DECAYED) and name == "weight"
                (decay if matrix else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
