"""Stage-1 losses: logit-laplace, perceptual (optional LPIPS), adversarial (hinge / non-saturating), R1.

L2 and the VQ/commitment loss need nothing beyond ``F.mse_loss`` and the quantizer; what is here
is everything else ViT-VQGAN combines, each a small function so the training loop reads as a sum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LAPLACE_EPS = 0.1  # DALL-E squeezes pixels into [eps, 1 - eps] so their logits stay finite


def logit_laplace_nll(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel NLL of ``target`` (in [0, 1]) under a logit-Laplace (DALL-E, Ramesh et al. 2021).

    ``out`` (B, 2C, H, W) holds the logit-space mean then the log-scale of each pixel.
    """
    c = target.shape[1]
    if out.shape[1] != 2 * c:
        raise ValueError(f"logit-laplace needs {2 * c} output channels (mean, log-scale), got {out.shape[1]}:"
                         " build the model with logit_laplace=True")
    mu, log_b = out[:, :c].float(), out[:, c:].float().clamp(-10, 10)
    y = target.float() * (1 - 2 * LAPLACE_EPS) + LAPLACE_EPS
    logit = torch.log(y) - torch.log1p(-y)
    nll = log_b + torch.abs(logit - mu) * torch.exp(-log_b) + torch.log(2 * y * (1 - y))
    return nll.mean()


class PerceptualLoss(nn.Module):
    """LPIPS (VGG) distance. Needs the ``lpips`` package and its VGG weights, which download at run time.

    Built only when the perceptual weight is non-zero; raises a clear error when unavailable, so an
    offline machine fails at start-up instead of mid-run.
    """

    def __init__(self, net: str = "vgg"):
        super().__init__()
        try:  # function-level: lpips is optional, needed only with perceptual_weight > 0
            import lpips
        except ImportError as e:
            raise RuntimeError(
                "perceptual_weight > 0 needs LPIPS: `pip install lpips` (it downloads VGG weights through "
                "torchvision on first use, so the machine needs a network or a pre-filled $TORCH_HOME). "
                "Or set perceptual_weight: 0."
            ) from e
        try:
            self.lpips = lpips.LPIPS(net=net, verbose=False)
        except Exception as e:  # download failures surface as many different exception types
            raise RuntimeError(
                f"could not load LPIPS/{net} weights ({type(e).__name__}: {e}). They download at run time: "
                "connect the machine, or copy them into $TORCH_HOME/hub/checkpoints, or set perceptual_weight: 0."
            ) from e
        self.lpips.eval().requires_grad_(False)

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> mean LPIPS distance."""
        return self.lpips(recon.float(), target.float()).mean()


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """Discriminator loss; ``kind`` is ``"hinge"`` or ``"non_saturating"``."""
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    if kind == "non_saturating":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    raise ValueError(f"unknown adversarial loss {kind!r}; use 'hinge' or 'non_saturating'")


def g_loss(fake_logits: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """Generator's adversarial loss for the same two kinds."""
    if kind == "hinge":
        return -fake_logits.mean()
    if kind == "non_saturating":
        return F.softplus(-fake_logits).mean()
    raise ValueError(f"unknown adversarial loss {kind!r}; use 'hinge' or 'non_saturating'")


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """Mean squared gradient norm of D at real images (Mescheder et al. 2018). Needs ``requires_grad``."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def adaptive_weight(rec_loss: torch.Tensor, adv_loss: torch.Tensor, last_layer: torch.Tensor,
                    max_weight: float = 1e4) -> torch.Tensor:
    """VQGAN's balance (Esser et al. 2021): ||grad rec|| / ||grad adv|| at the decoder's last layer."""
    (g_rec,) = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)
    (g_adv,) = torch.autograd.grad(adv_loss, last_layer, retain_graph=True)
    return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0, max_weight).detach()
