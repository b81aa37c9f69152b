"""Sample-quality metrics for SVG generators: validity, uniqueness, novelty, raster IoU.

All comparisons use one raster: the SVG drawn by :func:`argen.svg.rasterize.rasterize` at
``4 × size`` and box-averaged down to ``size`` (resvg anti-aliases with only 4 × 4 samples per
pixel, so a direct ``size`` render moves whole rows across the threshold for 0.1 px shifts), then
thresholded at half coverage into a ``size × size`` bit mask.

**Identical** (for uniqueness and novelty): raster IoU of the 64 px masks ≥ 0.98 (two blank
rasters count as identical). Pairwise IoU is one matrix product of bit vectors, so 200 samples
against ~7,000 training icons take about a second once the training masks are computed
(pass them precomputed with :func:`raster_masks` to avoid re-rendering the training set).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from argen.svg.errors import SVGError
from argen.svg.parse import normalize_paths
from argen.svg.rasterize import rasterize

SUPERSAMPLE = 4
IDENTICAL_IOU = 0.98


def raster_coverage(svg: str, size: int = 64) -> np.ndarray:
    """(size, size) float32 ink coverage in [0, 1] (0 = white). Raises :class:`SVGError`."""
    img = rasterize(svg, size * SUPERSAMPLE).convert("L")
    ink = 1.0 - np.asarray(img, dtype=np.float32) / 255.0
    return ink.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))


def raster_mask(svg: str, size: int = 64) -> np.ndarray:
    """(size, size) bool: pixels at least half covered by ink."""
    return raster_coverage(svg, size) >= 0.5


def raster_iou(a: str, b: str, size: int = 64, soft: bool = False) -> float:
    """IoU of the two SVGs' masks at ``size`` px (1.0 when both are blank).

    ``soft=True`` uses coverage instead of masks (Σ min / Σ max), which is free of threshold
    flips and so a steadier measure of small geometric error.
    """
    if soft:
        ca, cb = raster_coverage(a, size), raster_coverage(b, size)
        union = float(np.maximum(ca, cb).sum())
        return float(np.minimum(ca, cb).sum()) / union if union > 0 else 1.0
    ma, mb = raster_mask(a, size), raster_mask(b, size)
    union = int((ma | mb).sum())
    return int((ma & mb).sum()) / union if union else 1.0


def raster_masks(svgs: Sequence[str], size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Flattened masks ``(N, size²)`` bool and a validity vector ``(N,)``.

    Valid means the strict parser accepts the SVG (it could be tokenized: well-formed, finite,
    strokes outlined, no unsupported elements) *and* resvg renders it.
    """
    masks = np.zeros((len(svgs), size * size), dtype=bool)
    valid = np.zeros(len(svgs), dtype=bool)
    for i, svg in enumerate(svgs):
        try:
            normalize_paths(svg, 1.0)
            masks[i] = raster_mask(svg, size).reshape(-1)
            valid[i] = True
        except SVGError:
            pass
    return masks, valid


def pairwise_iou(a: np.ndarray, b: np.ndarray, block: int = 2048) -> np.ndarray:
    """(N, D) × (M, D) bool masks -> (N, M) IoU, blockwise so memory stays small."""
    fa = a.astype(np.float32)
    na = fa.sum(axis=1)
    out = np.empty((len(a), len(b)), dtype=np.float32)
    for s in range(0, len(b), block):
        fb = b[s:s + block].astype(np.float32)
        inter = fa @ fb.T
        union = na[:, None] + fb.sum(axis=1)[None, :] - inter
        out[:, s:s + block] = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return out


def validity(svgs: Sequence[str], size: int = 64) -> float:
    """Share of SVGs that parse (strictly, see :func:`raster_masks`) and rasterize."""
    if not len(svgs):
        return float("nan")
    return float(raster_masks(svgs, size)[1].mean())


def uniqueness(svgs: Sequence[str], size: int = 64, threshold: float = IDENTICAL_IOU) -> float:
    """IconShop Uniqueness: share of valid samples identical to no other sample in the set."""
    masks, valid = raster_masks(svgs, size)
    masks = masks[valid]
    if not len(masks):
        return float("nan")
    same = pairwise_iou(masks, masks) >= threshold
    np.fill_diagonal(same, False)
    return float((~same.any(axis=1)).mean())


def novelty(svgs: Sequence[str], train: Sequence[str] | np.ndarray, size: int = 64,
            threshold: float = IDENTICAL_IOU) -> float:
    """IconShop Novelty: share of valid samples identical to no training icon.

    ``train``: training SVGs, or their masks from :func:`raster_masks` (``(M, size²)`` bool).
    Compare against what the model saw, i.e. ``decode(encode(svg))`` of the training icons, so a
    memorised icon is not called novel because of quantization.
    """
    masks, valid = raster_masks(svgs, size)
    masks = masks[valid]
    if not len(masks):
        return float("nan")
    if isinstance(train, np.ndarray):
        if train.ndim != 2 or train.shape[1] != size * size:
            raise ValueError(f"train masks must have shape (M, {size * size}), got {train.shape}")
        tmasks = train.astype(bool)
    else:
        tmasks, tvalid = raster_masks(train, size)
        tmasks = tmasks[tvalid]
    if not len(tmasks):
        return 1.0
    copied = (pairwise_iou(masks, tmasks) >= threshold).any(axis=1)
    return float((~copied).mean())
