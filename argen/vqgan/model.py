"""ViT-VQGAN (Yu et al. 2021): a ViT encoder, a factorized L2-normalized codebook, a ViT decoder.

Pixels -> non-overlapping patches -> transformer -> a low-dimensional, unit-length latent per patch
-> nearest code (cosine) -> transformer -> pixels. Low code dimension and L2 normalization are what
keep most of the codebook in use (paper: ~96% at dim 8-16 vs 4% at 256-d). No Lightning here: the
training loop lives in :mod:`argen.vqgan.lit`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from einops import rearrange
from torch import nn
from vector_quantize_pytorch import VectorQuantize

from argen import presets
from argen.nn import MLP, SelfAttention, make_norm
from argen.vqgan.losses import LAPLACE_EPS


@dataclass
class VQGANConfig:
    image_size: int = 256
    patch_size: int = 8
    channels: int = 3
    dim: int = 512
    enc_layers: int = 8
    dec_layers: int = 8
    heads: int = 8
    mlp_dim: int = 2048
    # Quantizer: factorized (dim -> code_dim) and L2-normalized (cosine) lookup, EMA codebook.
    codebook_size: int = 8192
    code_dim: int = 32
    commitment_weight: float = 0.25
    codebook_decay: float = 0.99
    kmeans_init: bool = True
    dead_code_threshold: float = 0.0  # replace codes whose EMA cluster size falls below this (0: off)
    rotation_trick: bool = True  # gradient through the quantizer by rotation (arXiv 2410.06424), else STE
    # Pixel head: "linear" maps each token to its patch; "conv" adds a residual 3x3 conv across seams.
    pixel_head: str = "linear"
    head_channels: int = 32  # hidden channels per pixel of the "conv" head
    logit_laplace: bool = False  # also predict a per-pixel log-scale (DALL-E's logit-laplace NLL)

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.pixel_head not in ("linear", "conv"):
            raise ValueError(f"pixel_head must be 'linear' or 'conv', got {self.pixel_head!r}")

    @property
    def grid_size(self) -> tuple[int, int]:
        n = self.image_size // self.patch_size
        return n, n

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VQGANConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown VQGAN config keys: {sorted(unknown)}")
        return cls(**d)


# Paper Table 1 transformer sizes (blocks / width / MLP / heads); encoder and decoder each.
PRESETS: dict[str, dict] = {
    "small": dict(enc_layers=8, dec_layers=8, dim=512, mlp_dim=2048, heads=8),
    "base": dict(enc_layers=12, dec_layers=12, dim=768, mlp_dim=3072, heads=12),
    "large": dict(enc_layers=32, dec_layers=32, dim=1280, mlp_dim=5120, heads=16),
}
NOMINAL_PARAMS = {"small": 32e6, "base": 91e6, "large": 599e6}


def config_from_preset(name: str, **overrides) -> VQGANConfig:
    """The named preset's config with ``overrides`` applied (e.g. ``image_size=128``)."""
    return presets.config_from_preset(VQGANConfig, PRESETS, name, "VQGAN", **overrides)


class Block(nn.Module):
    """Pre-norm transformer block (bidirectional: every patch sees every other)."""

    def __init__(self, dim: int, heads: int, mlp_dim: int):
        super().__init__()
        self.norm1 = make_norm("layernorm", dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = make_norm("layernorm", dim)
        self.mlp = MLP(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """Learned 2D (row + column) positions, a stack of blocks, a final norm."""

    def __init__(self, grid: tuple[int, int], dim: int, layers: int, heads: int, mlp_dim: int):
        super().__init__()
        self.row = nn.Parameter(torch.randn(grid[0], 1, dim) * 0.02)
        self.col = nn.Parameter(torch.randn(1, grid[1], dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_dim) for _ in range(layers))
        self.norm = make_norm("layernorm", dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + rearrange(self.row + self.col, "h w d -> (h w) d")
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class Encoder(nn.Module):
    def __init__(self, c: VQGANConfig):
        super().__init__()
        self.patch = nn.Conv2d(c.channels, c.dim, c.patch_size, stride=c.patch_size)
        self.transformer = Transformer(c.grid_size, c.dim, c.enc_layers, c.heads, c.mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transformer(rearrange(self.patch(x), "b d h w -> b (h w) d"))


class Decoder(nn.Module):
    """Transformer over the codes, then a pixel head: each token -> its patch's pixels.

    The ``"conv"`` head also predicts ``head_channels`` features per pixel and adds a 3x3 conv of
    them to the patch pixels, so neighbouring patches can agree across their seams. Its conv starts
    at zero: training begins from the plain linear head and only keeps what helps.
    """

    def __init__(self, c: VQGANConfig):
        super().__init__()
        self.c = c
        self.transformer = Transformer(c.grid_size, c.dim, c.dec_layers, c.heads, c.mlp_dim)
        self.out_channels = c.channels * (2 if c.logit_laplace else 1)
        hidden = c.head_channels if c.pixel_head == "conv" else 0
        self.head = nn.Linear(c.dim, c.patch_size**2 * (self.out_channels + hidden))
        self.conv = None
        if hidden:
            self.conv = nn.Sequential(nn.GELU(), nn.Conv2d(hidden, self.out_channels, 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h, w = self.c.grid_size
        p = self.c.patch_size
        x = self.head(self.transformer(z))
        x = rearrange(x, "b (h w) (p q c) -> b c (h p) (w q)", h=h, w=w, p=p, q=p)
        if self.conv is None:
            return x
        return x[:, : self.out_channels] + self.conv(x[:, self.out_channels :])


class VQGAN(nn.Module):
    """Images in [-1, 1] -> (reconstruction, code ids, VQ loss).

    With ``logit_laplace`` the decoder returns 2C channels: per-pixel logit-space mean and log-scale;
    :meth:`pixels` turns its output into an image in [-1, 1] either way.
    """

    def __init__(self, config: VQGANConfig):
        super().__init__()
        self.config = c = config
        self.encoder = Encoder(c)
        self.quantizer = self._quantizer(sync=False)
        self.decoder = Decoder(c)
        self.apply(_init_weights)
        if self.decoder.conv is not None:
            nn.init.zeros_(self.decoder.conv[-1].weight)

    def _quantizer(self, sync: bool) -> VectorQuantize:
        c = self.config
        return VectorQuantize(
            dim=c.dim, codebook_size=c.codebook_size, codebook_dim=c.code_dim, use_cosine_sim=True,
            commitment_weight=c.commitment_weight, decay=c.codebook_decay, kmeans_init=c.kmeans_init,
            threshold_ema_dead_code=c.dead_code_threshold, rotation_trick=c.rotation_trick, sync_codebook=sync,
        )

    def sync_codebook_across_ranks(self) -> None:
        """Make the EMA codebook, k-means init and dead-code replacement all-reduce across ranks.

        The quantizer decides this when it is built, which is before the process group exists in a
        Lightning run; this rebuilds it (same weights and codebook) once it does.
        """
        state = self.quantizer.state_dict()
        device = next(self.quantizer.buffers()).device
        self.quantizer = self._quantizer(sync=True).to(device)
        self.quantizer.load_state_dict(state)

    def quantize(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images (B, C, H, W) in [-1, 1] -> (quantized latents (B, N, dim), ids (B, N), VQ loss)."""
        c = self.config
        if images.ndim != 4 or images.shape[1] != c.channels or images.shape[-2:] != (c.image_size,) * 2:
            raise ValueError(f"expected images of shape (B, {c.channels}, {c.image_size}, {c.image_size}), "
                             f"got {tuple(images.shape)}")
        return self.quantizer(self.encoder(images))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z, ids, vq_loss = self.quantize(images)
        return self.decoder(z), ids, vq_loss

    def pixels(self, out: torch.Tensor) -> torch.Tensor:
        """Decoder output -> image in [-1, 1]."""
        if not self.config.logit_laplace:
            return out
        mu = out[:, : self.config.channels]
        return ((torch.sigmoid(mu) - LAPLACE_EPS) / (1 - 2 * LAPLACE_EPS)).clamp(0, 1) * 2 - 1

    def decode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Code ids (B, N) -> decoder output (B, C or 2C, H, W)."""
        n = math.prod(self.config.grid_size)
        if ids.ndim != 2 or ids.shape[1] != n:
            raise ValueError(f"expected ids of shape (B, {n}), got {tuple(ids.shape)}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.config.codebook_size):
            raise ValueError(f"code ids must lie in [0, {self.config.codebook_size}), "
                             f"got [{int(ids.min())}, {int(ids.max())}]")
        return self.decoder(self.quantizer.get_output_from_indices(ids))

    def last_layer(self) -> torch.Tensor:
        """Weight of the decoder's pixel head (for the adaptive adversarial weight)."""
        return self.decoder.head.weight

    def num_parameters(self, part: str = "all") -> int:
        """Parameter count of ``"all"``, ``"encoder"`` or ``"decoder"`` (codebook buffers excluded)."""
        module = {"all": self, "encoder": self.encoder, "decoder": self.decoder}[part]
        return sum(p.numel() for p in module.parameters())


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
