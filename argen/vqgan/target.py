"""The trained image tokenizer as users and stage 2 see it: a bundle, encode, decode, evaluate.

:class:`ImageTokenizer` loads an export bundle and turns images into code ids and back.
:class:`ImageTarget` wraps one as an :class:`argen.targets.TargetTokenizer` so the encoder-decoder
writes image tokens without knowing they are images. :func:`evaluate` measures a tokenizer the way
the done-when criteria do (PSNR, codebook usage, perplexity).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from argen.export import load_bundle, save_bundle
from argen.images import ImageSource, prepare_image, to_pil, to_tensor
from argen.targets import TargetTokenizer
from argen.vqgan.model import VQGAN, VQGANConfig

KIND = "image_tokenizer"


class ImageTokenizer:
    """Images <-> grids of code ids. Always in eval mode; encoding is deterministic (nearest code)."""

    def __init__(self, model: VQGAN):
        self.model = model.eval().requires_grad_(False)

    # -- bundle ---------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> ImageTokenizer:
        config, state = load_bundle(directory, KIND, device=device)
        model = VQGAN(VQGANConfig.from_dict(config["model"]))
        model.load_state_dict(state)
        return cls(model.to(device))

    def save_pretrained(self, directory: str | Path) -> Path:
        return save_bundle(directory, KIND, {"model": self.config.to_dict()}, self.model.state_dict())

    # -- sizes ----------------------------------------------------------------------------------
    @property
    def config(self) -> VQGANConfig:
        return self.model.config

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.config.grid_size

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> ImageTokenizer:
        self.model.to(device)
        return self

    # -- encode / decode ------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images: torch.Tensor | ImageSource | Sequence[ImageSource]) -> torch.LongTensor:
        """Images -> ids (B, h*w), on the tokenizer's device.

        ``images``: a float (B, 3, H, W) or (3, H, W) tensor in [0, 1], or one picture or a list of
        pictures as encoded bytes, file paths or PIL images. Pictures go through
        :func:`argen.images.prepare_image` at ``image_size``, the path training data takes, so they
        get the tokens they would get in a shard.
        """
        x = self._as_tensor(images)
        _, ids, _ = self.model.quantize(x.to(self.device, torch.float32) * 2 - 1)
        return ids.long()

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids (B, h*w) -> float images (B, 3, H, W) in [0, 1]."""
        out = self.model.decode_ids(torch.as_tensor(ids, device=self.device).long())
        return (self.model.pixels(out).float().clamp(-1, 1) + 1) / 2

    def _as_tensor(self, images) -> torch.Tensor:
        if isinstance(images, torch.Tensor):
            if images.ndim == 3:
                images = images.unsqueeze(0)
            if images.is_floating_point() and images.numel() and (images.min() < -1e-3 or images.max() > 1 + 1e-3):
                raise ValueError(f"image tensors must hold values in [0, 1], got [{images.min():.3g}, "
                                 f"{images.max():.3g}] (divide uint8 images by 255)")
            if not images.is_floating_point():
                raise ValueError(f"image tensors must be float in [0, 1], got dtype {images.dtype}")
            return images
        if isinstance(images, Image.Image | bytes | str | os.PathLike):
            images = [images]
        return to_tensor([prepare_image(im, self.image_size) for im in images])


class ImageTarget(TargetTokenizer):
    """An :class:`ImageTokenizer` bundle as a stage-2 target: a fixed-length raster of ``h*w`` codes.

    Decoder position ``t`` predicts token ``t``; its features are that token's (row, column), so the
    decoder gets 2D positions through the generic feature tables.
    """

    kind = KIND
    eos_id = None
    pad_id = None

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        self.path = Path(path)
        self.tokenizer = ImageTokenizer.from_pretrained(self.path, device=device)
        h, w = self.tokenizer.grid_size
        self.vocab_size = self.tokenizer.codebook_size
        self.max_len = h * w
        self.feature_sizes = (h, w)

    def encode_batch(self, batch: dict[str, Any]) -> torch.Tensor:
        if "tokens" in batch:
            tokens = torch.as_tensor(batch["tokens"]).long()
            if tokens.ndim != 2 or tokens.shape[1] != self.max_len:
                raise ValueError(f"batch['tokens'] must be (B, {self.max_len}) for this tokenizer, "
                                 f"got {tuple(tokens.shape)} (pre-encoded with a different tokenizer?)")
            if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
                raise ValueError(f"batch['tokens'] holds ids outside [0, {self.vocab_size})")
            return tokens
        if "image" not in batch:
            raise KeyError(f"an image target needs batch['image'] or batch['tokens']; batch has {sorted(batch)}")
        image = batch["image"]
        return self.tokenizer.encode(image).to(image.device)

    def token_features(self, inputs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        h, w = self.feature_sizes
        pos = positions.to(inputs.device).long().clamp(0, self.max_len - 1)
        rc = torch.stack([pos // w, pos % w], dim=-1)  # (T, 2)
        return rc.unsqueeze(0).expand(inputs.shape[0], -1, -1)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> ImageTarget:
        return cls(directory, device=device)

    def encode(self, image: ImageSource) -> torch.Tensor:
        """One picture (bytes, a path or a PIL image) -> its 1-D ids (``h*w``), the inverse of :meth:`decode`."""
        if isinstance(image, torch.Tensor | list | tuple):
            raise TypeError("ImageTarget.encode takes one picture; ImageTokenizer.encode takes batches")
        return self.tokenizer.encode(image)[0]

    def decode(self, ids: torch.Tensor) -> Image.Image:
        """1-D ids (``h*w``) -> one PIL image."""
        return self.batch_decode(self._one_row(ids).unsqueeze(0))[0]

    def batch_decode(self, ids: torch.Tensor) -> list[Image.Image]:
        """(B, h*w) ids -> PIL images."""
        return to_pil(self.tokenizer.decode(ids))

    def save_pretrained(self, directory: str | Path) -> None:
        """Write the bundle this target encodes with: the weights in memory, not a re-read of ``path``,
        so a generator's export holds the very tokenizer its tokens came from even if ``path`` changed."""
        self.tokenizer.save_pretrained(directory)

    def to(self, device: torch.device | str) -> ImageTarget:
        self.tokenizer.to(device)
        return self


# -- evaluation -------------------------------------------------------------------------------------
def code_stats(counts: torch.Tensor) -> dict[str, float]:
    """Histogram of code ids -> usage (share of codes used at least once), perplexity, unused codes."""
    counts = counts.double()
    p = counts / counts.sum().clamp_min(1)
    nz = p[p > 0]
    return {"usage": float((counts > 0).double().mean()),
            "perplexity": float(torch.exp(-(nz * nz.log()).sum())),
            "unused_codes": int((counts == 0).sum())}


@torch.no_grad()
def evaluate(tokenizer: ImageTokenizer, images: torch.Tensor | Sequence[Image.Image],
             batch_size: int = 128) -> dict[str, float]:
    """Reconstruct ``images`` through the codes and measure them.

    Returns ``psnr`` (mean of per-image PSNR, dB), ``psnr_pooled`` (PSNR of the pooled MSE), ``ssim``,
    ``usage``, ``perplexity``, ``unused_codes`` and ``images``.
    """
    # function-level: torchmetrics is a heavy import, and ImageTokenizer is on the sampling path
    from torchmetrics.functional.image import structural_similarity_index_measure

    n = len(images)
    if n == 0:
        raise ValueError("evaluate needs at least one image")
    counts = torch.zeros(tokenizer.codebook_size, dtype=torch.long)
    mses, ssims = [], []
    for i in range(0, n, batch_size):
        x = tokenizer._as_tensor(images[i : i + batch_size]).float()
        ids = tokenizer.encode(x)
        recon = tokenizer.decode(ids).cpu()
        counts += torch.bincount(ids.flatten().cpu(), minlength=tokenizer.codebook_size)
        mses.append((recon - x).pow(2).flatten(1).mean(1))
        ssims.append(structural_similarity_index_measure(recon, x, data_range=1.0, reduction="none"))
    mse = torch.cat(mses).clamp_min(1e-10)
    return {"psnr": float((-10 * mse.log10()).mean()), "psnr_pooled": float(-10 * math.log10(mse.mean())),
            "ssim": float(torch.cat(ssims).mean()), **code_stats(counts), "images": n}
