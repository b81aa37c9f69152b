"""StyleGAN2-style residual discriminator (Karras et al. 2020), as ViT-VQGAN uses for its GAN loss.

Residual blocks halve the resolution down to 4x4, a minibatch standard-deviation channel lets the
critic see batch diversity, and a small MLP gives one logit per image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, 3, padding=1)
        self.conv2 = nn.Conv2d(cin, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.conv1(x), 0.2)
        y = F.avg_pool2d(F.leaky_relu(self.conv2(y), 0.2), 2)
        return (y + F.avg_pool2d(self.skip(x), 2)) / math.sqrt(2)


class Discriminator(nn.Module):
    """Images (B, C, S, S) in [-1, 1] -> logits (B,). ``S`` must be a power of two >= 8."""

    def __init__(self, image_size: int, channels: int = 3, width: int = 64, max_width: int = 512,
                 mbstd_group: int = 4):
        super().__init__()
        if image_size < 8 or image_size & (image_size - 1):
            raise ValueError(f"discriminator image_size must be a power of two >= 8, got {image_size}")
        self.mbstd_group = mbstd_group
        n_down = int(math.log2(image_size)) - 2
        widths = [min(width * 2**i, max_width) for i in range(n_down + 1)]
        self.from_rgb = nn.Conv2d(channels, widths[0], 1)
        self.blocks = nn.ModuleList(ResBlock(widths[i], widths[i + 1]) for i in range(n_down))
        self.conv = nn.Conv2d(widths[-1] + 1, widths[-1], 3, padding=1)
        self.fc = nn.Linear(widths[-1] * 16, widths[-1])
        self.out = nn.Linear(widths[-1], 1)

    def minibatch_std(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = math.gcd(b, self.mbstd_group)
        std = x.reshape(g, -1, c, h, w).var(0, unbiased=False).add(1e-8).sqrt()  # (B/g, C, H, W)
        std = std.mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, std], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.from_rgb(x), 0.2)
        for block in self.blocks:
            x = block(x)
        x = F.leaky_relu(self.conv(self.minibatch_std(x)), 0.2)
        x = F.leaky_relu(self.fc(x.flatten(1)), 0.2)
        return self.out(x).squeeze(1)
