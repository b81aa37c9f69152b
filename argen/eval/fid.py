"""FID and KID through torchmetrics, on Inception features when their weights are here, else a
documented fallback extractor.

torchmetrics' Inception (``FrechetInceptionDistance(feature=2048)``) needs ``torch-fidelity`` and
the ``pt_inception-2015-12-05`` weights, which it would download. Nothing downloads at run time in
argen, so Inception is used only when both are present locally (see :func:`inception_weights`).
Otherwise features come from :class:`RandConvFeatures`: a fixed, seeded random convolutional net.
Random-network features rank generators sensibly (Naeem et al. 2020, "Reliable Fidelity and
Diversity Metrics for Generative Models"), but their values are **not comparable with published
Inception FIDs**; every report names the extractor it used.

Features are extracted once and handed to torchmetrics' metrics through a pass-through module, so
FID and KID see the very same features (and so does the NumPy cross-check in the tests).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from argen.images import prepare_image

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's file name
INCEPTION_ENV = "ARGEN_INCEPTION_WEIGHTS"
FEATURE_KINDS = ("auto", "inception", "randconv")


class FeaturesUnavailable(RuntimeError):
    """The feature extractor asked for cannot run here (missing package or weights)."""


class RandConvFeatures(nn.Module):
    """``randconv-v1``: images -> 256-d features of a fixed random conv net (no trained weights).

    Images are resized to 64 px (antialiased), scaled to [-1, 1], then pass four 3×3 conv + ReLU
    layers (3→32→64→128→256 channels, strides 1, 2, 2, 2) and a global average pool. Weights are
    He-normal from NumPy's ``RandomState(seed)``, whose stream NumPy keeps fixed across versions,
    so the features are the same on every machine and install.
    """

    name = "randconv-v1"
    channels = (3, 32, 64, 128, 256)
    strides = (1, 2, 2, 2)
    size = 64

    def __init__(self, seed: int = 0):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.num_features = self.channels[-1]
        for i, (cin, cout) in enumerate(zip(self.channels, self.channels[1:])):
            w = rng.standard_normal((cout, cin, 3, 3)) * math.sqrt(2.0 / (cin * 9))
            self.register_buffer(f"w{i}", torch.from_numpy(w).float())
        self.eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> float (B, 256)."""
        x = _check_uint8(images).float().div(127.5).sub(1.0)
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        for i, stride in enumerate(self.strides):
            x = F.relu(F.conv2d(x, getattr(self, f"w{i}"), stride=stride, padding=1))
        return x.mean(dim=(2, 3))


def _check_uint8(images: torch.Tensor) -> torch.Tensor:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"feature extractors take uint8 images of shape (B, 3, H, W), "
                         f"got {images.dtype} {tuple(images.shape)}")
    return images


def inception_weights(path: str | Path | None = None) -> Path | None:
    """The local Inception weights file: ``path``, else ``$ARGEN_INCEPTION_WEIGHTS``, else
    torch-fidelity's file in the torch hub cache; ``None`` when none of them exists."""
    candidates = [path, os.environ.get(INCEPTION_ENV),
                  Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    if path is not None:
        raise FileNotFoundError(f"Inception weights {path} do not exist")
    return None


def _has_torch_fidelity() -> bool:
    try:  # function-level: an optional package, probed only when Inception features are asked for
        import torch_fidelity  # noqa: F401
    except ImportError:
        return False
    return True


def feature_extractor(kind: str = "auto", inception_path: str | Path | None = None,
                      device: str | torch.device = "cpu") -> tuple[nn.Module, str]:
    """``(module, name)``: a uint8 (B, 3, H, W) -> (B, D) feature extractor.

    ``auto`` takes Inception when torch-fidelity is installed and its weights are on disk, else
    ``randconv``. Asking for ``inception`` when it is not available is an error that says why.
    """
    if kind not in FEATURE_KINDS:
        raise ValueError(f"feature extractor must be one of {FEATURE_KINDS}, got {kind!r}")
    if kind in ("auto", "inception"):
        weights = inception_weights(inception_path)
        fidelity = _has_torch_fidelity()
        if weights is not None and fidelity:
            from torchmetrics.image.fid import NoTrainInceptionV3  # function-level: heavy, Inception only

            net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                     feature_extractor_weights_path=str(weights))
            net.num_features = 2048
            return net.to(device), "inception-v3-compat (pool3, 2048-d)"
        if kind == "inception":
            why = [] if fidelity else ["torch-fidelity is not installed (pip install torch-fidelity)"]
            if weights is None:
                why.append(f"no weights file: pass --inception-weights, set ${INCEPTION_ENV}, or put "
                           f"{INCEPTION_FILE} in {Path(torch.hub.get_dir()) / 'checkpoints'}")
            raise FeaturesUnavailable("Inception features are not available: " + "; ".join(why))
    return RandConvFeatures().to(device), RandConvFeatures.name


def to_uint8(images: Iterable) -> torch.Tensor:
    """PIL images, or float (B, 3, H, W) tensors in [0, 1], -> one uint8 (B, 3, H, W) tensor.

    PIL images go through :func:`argen.images.prepare_image` at the first one's shorter side, so
    real and generated pictures are read the way training reads them.
    """
    if isinstance(images, torch.Tensor):
        if images.dtype == torch.uint8:
            return _check_uint8(images)
        return _check_uint8(images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu())
    images = list(images)
    if not images:
        raise ValueError("no images to extract features from")
    side = min(images[0].size)
    arrays = [np.asarray(prepare_image(im, side)) for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def extract(extractor: nn.Module, images: Sequence | torch.Tensor, batch_size: int = 256,
            progress: bool = False, desc: str = "features") -> torch.Tensor:
    """Features (N, D) float64 of ``images`` (PIL list or tensor; see :func:`to_uint8`)."""
    n = len(images)
    if n == 0:
        raise ValueError("no images to extract features from")
    device = next(iter(extractor.buffers()), torch.empty(0)).device
    out = []
    for start in tqdm(range(0, n, batch_size), desc=desc, unit="batch", disable=not progress):
        batch = to_uint8(images[start : start + batch_size]).to(device)
        out.append(extractor(batch).double().cpu())
    return torch.cat(out)


class _Precomputed(nn.Module):
    """Pass-through 'extractor' so torchmetrics' FID/KID run on features computed once."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def fid_kid(real: torch.Tensor, fake: torch.Tensor, kid_subsets: int = 100, kid_subset_size: int = 1000,
            seed: int = 0) -> dict[str, float]:
    """FID, KID mean and KID std (torchmetrics) between two feature sets (N, D) and (M, D).

    KID's subset size shrinks to the smaller set when that holds fewer than ``kid_subset_size``.
    Its random subsets are drawn from ``seed``, so the numbers repeat.
    """
    # function-level: torchmetrics' image metrics are a heavy import, needed only for the final numbers
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sets must be (N, D) and (M, D), got {tuple(real.shape)} and {tuple(fake.shape)}")
    if len(real) < 2 or len(fake) < 2:
        raise ValueError(f"FID needs at least 2 real and 2 generated images, got {len(real)} and {len(fake)}")
    real, fake = real.double(), fake.double()
    d = real.shape[1]
    fid = FrechetInceptionDistance(feature=_Precomputed(d))
    fid.update(real, real=True)
    fid.update(fake, real=False)
    size = min(kid_subset_size, len(real), len(fake))
    with warnings.catch_warnings():  # "KID keeps all features in memory": here they already are
        warnings.simplefilter("ignore", UserWarning)
        whole = size == len(real) == len(fake)  # every subset would be the whole set: draw it once
        kid = KernelInceptionDistance(feature=_Precomputed(d), subsets=1 if whole else kid_subsets, subset_size=size)
    kid.update(real, real=True)
    kid.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std),
            "kid_subset_size": size, "n_real": len(real), "n_fake": len(fake)}


class FID:
    """FID/KID of image sets with one extractor: ``FID(kind).score(real_images, fake_images)``.

    ``features(images)`` can be called once per set and the results passed to :func:`fid_kid`
    when one set is compared with several others (e.g. a CFG sweep against one real set).
    """

    def __init__(self, kind: str = "auto", inception_path: str | Path | None = None,
                 device: str | torch.device = "cpu", batch_size: int = 256):
        self.extractor, self.name = feature_extractor(kind, inception_path, device)
        self.batch_size = batch_size

    def features(self, images, progress: bool = False, desc: str = "features") -> torch.Tensor:
        return extract(self.extractor, images, self.batch_size, progress, desc)

    def score(self, real, fake, progress: bool = False) -> dict[str, float]:
        return {**fid_kid(self.features(real, progress, "real features"),
                          self.features(fake, progress, "generated features")), "features": self.name}
