"""``argen.eval tokenizer``: how well an image tokenizer export reconstructs images from shards.

PSNR (mean of per-image values, and of the pooled MSE), SSIM (torchmetrics, Gaussian 11×11),
LPIPS (torchmetrics, AlexNet) when torchvision and its AlexNet weights are on disk, rFID/rKID
(originals vs reconstructions, see :mod:`argen.eval.fid`), codebook usage and perplexity. On
shapes shards (captions that :func:`argen.data.shapes.parse_caption` reads), also the share of
reconstructions that still score as their caption: does the tokenizer keep the composition?
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure
from tqdm import tqdm

from argen.data import shapes
from argen.data.shards import expand_shards, make_loader
from argen.eval.cache import Cache
from argen.eval.fid import FID, fid_kid, to_uint8
from argen.eval.report import Report
from argen.export import read_config
from argen.images import to_pil
from argen.vqgan import ImageTokenizer
from argen.vqgan.target import code_stats

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet weights, which LPIPS builds on


def lpips_metric(device: str | torch.device = "cpu"):
    """``(metric, None)`` when LPIPS can run offline, else ``(None, why)``."""
    try:  # function-level: torchvision is optional (LPIPS is skipped without it)
        import torchvision  # noqa: F401
    except ImportError:
        return None, "torchvision is not installed (LPIPS builds on its AlexNet)"
    weights = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE
    if not weights.is_file():
        return None, f"AlexNet weights are not on disk ({weights}); they cannot be downloaded here"
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity  # function-level: needs torchvision

    return LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True).to(device), None


def evaluate_tokenizer(export: str | Path, shards: str | Sequence[str], out: str | Path, max_images: int = 512,
                       batch_size: int = 64, device: str = "cpu", features: str = "auto",
                       inception_weights: str | None = None, grid_images: int = 16, cell: int = 96,
                       wandb: bool = False, progress: bool = True,
                       cache: str | Path | None | bool = None) -> dict[str, Any]:
    """Reconstruct up to ``max_images`` shard images through the codes; write the report to ``out``.

    ``cache``: the folder keeping the originals' FID features between runs (:mod:`argen.eval.cache`;
    ``False``: none)."""

    try:
        read_config(export, "image_tokenizer")
    except ValueError as e:
        raise ValueError(f"`argen.eval tokenizer` needs an image tokenizer export (argen_kind "
                         f"'image_tokenizer'): {e}; a generator export is evaluated with `argen.eval shapes`, "
                         f"`svg` or `prompts`") from None
    if max_images < 2:
        raise ValueError(f"max_images must be ≥ 2 (rFID needs two images), got {max_images}")
    urls = expand_shards(shards)  # a missing shard is an error naming it, before any work
    fid = FID(features, inception_weights, device)
    store = Cache(cache)
    tok = ImageTokenizer.from_pretrained(export, device=device)
    lpips, lpips_why = lpips_metric(device)
    report = Report(out, f"argen eval tokenizer: {export}", {
        "subcommand": "tokenizer", "export": str(export), "shards": [str(s) for s in urls], "max_images": max_images,
        "image_size": tok.image_size, "grid_size": list(tok.grid_size), "codebook_size": tok.codebook_size,
        "fid_features": fid.name, "lpips": "alex" if lpips is not None else f"skipped: {lpips_why}"}, wandb)

    loader = make_loader(urls, train=False, batch_size=batch_size, image_size=tok.image_size, load_image=True)
    counts = torch.zeros(tok.codebook_size, dtype=torch.long)
    mse, ssim, lp, f_orig, f_rec = [], [], [], [], []
    shown_orig, shown_rec, captions, recon_scores = [], [], [], []
    n, is_shapes = 0, True
    bar = tqdm(total=max_images, desc="reconstructing", unit=" images", disable=not progress)
    for batch in loader:
        if "image" not in batch:
            continue
        x = batch["image"][: max_images - n].float()
        ids = tok.encode(x)
        rec = tok.decode(ids).cpu()
        counts += torch.bincount(ids.flatten().cpu(), minlength=tok.codebook_size)
        mse.append((rec - x).pow(2).flatten(1).mean(1))
        ssim.append(structural_similarity_index_measure(rec, x, data_range=1.0, reduction="none"))
        if lpips is not None:
            up = (lambda t: F.interpolate(t, size=64, mode="bilinear")) if x.shape[-1] < 64 else (lambda t: t)
            lp.append(float(lpips(up(rec).to(device), up(x).to(device))) * len(x))  # batch mean -> sum
        f_orig.append(store.features(fid, to_uint8(x), "tokenizer-originals"))
        f_rec.append(fid.features(to_uint8(rec)))
        if is_shapes:
            scores = _shape_scores(to_pil(rec), batch["caption"][: len(x)])
            is_shapes = scores is not None
            recon_scores = recon_scores + scores if is_shapes else []
        if len(shown_orig) < grid_images:
            k = grid_images - len(shown_orig)
            shown_orig += to_pil(x[:k])
            shown_rec += to_pil(rec[:k])
            captions += [f"{-10 * torch.log10(m.clamp_min(1e-10)):.1f} dB" for m in mse[-1][:k]]
        n += len(x)
        bar.update(len(x))
        if n >= max_images:
            break
    bar.close()
    stream = getattr(loader, "dataset", None)
    skipped = getattr(getattr(stream, "counter", None), "reasons", {})
    if n < 2:
        raise ValueError(f"read {n} image(s) from {len(urls)} shard(s) ({', '.join(urls[:3])}"
                         f"{'…' if len(urls) > 3 else ''}); need ≥ 2. Skipped: {dict(skipped) or 'none'} "
                         "(tokenizer evaluation needs image shards: KEY.jpg/png + KEY.txt)")

    mse_all = torch.cat(mse).clamp_min(1e-10)
    fo, fr = torch.cat(f_orig), torch.cat(f_rec)
    r = fid_kid(fo, fr)
    # The floor: FID between two disjoint halves of the originals (A, B), beside the FID of A against
    # the reconstructions of B: same counts, so the gap is what the tokenizer loses.
    half = n // 2
    floor = fid_kid(fo[:half], fo[half:2 * half]) if half >= 2 else None
    rec_half = fid_kid(fo[:half], fr[half:2 * half]) if half >= 2 else None
    stats = code_stats(counts)
    m: dict[str, Any] = {
        "images": n, "psnr": float((-10 * mse_all.log10()).mean()),
        "psnr_pooled": float(-10 * torch.log10(mse_all.mean())), "ssim": float(torch.cat(ssim).mean()),
        "lpips": sum(lp) / n if lp else None, "rfid": r["fid"], "rkid": r["kid_mean"],
        "rfid_floor": floor["fid"] if floor else None, "rfid_half": rec_half["fid"] if rec_half else None,
        "rfid_features": fid.name, "codebook_usage": stats["usage"], "codebook_perplexity": stats["perplexity"],
        "unused_codes": stats["unused_codes"], "codebook_size": tok.codebook_size, "tokens": int(counts.sum()),
        "skipped_samples": dict(skipped)}
    if recon_scores:
        m["shapes_full_on_reconstructions"] = sum(s["full"] for s in recon_scores) / len(recon_scores)
        m["shapes_color_shape_on_reconstructions"] = sum(s["color_shape"] for s in recon_scores) / len(recon_scores)
    report.metrics = m

    report.summary("PSNR", m["psnr"], "dB, mean over images")
    report.summary("SSIM", m["ssim"])
    report.summary("LPIPS", m["lpips"], "AlexNet" if lpips is not None else f"not measured: {lpips_why}")
    report.summary("rFID", m["rfid"], f"originals vs reconstructions; {fid.name}")
    if floor:
        report.summary("rFID, disjoint halves", m["rfid_half"], f"originals A vs reconstructions of B ({half} each); "
                       f"real-vs-real floor (A vs B): {m['rfid_floor']:.4g}")
    report.summary("codebook usage", m["codebook_usage"], f"of {tok.codebook_size} codes, over {n} images",
                   percent=True)
    report.summary("codebook perplexity", m["codebook_perplexity"], f"max {tok.codebook_size}")
    if recon_scores:
        report.summary("shapes still read correctly", m["shapes_full_on_reconstructions"],
                       "argen.data.shapes.score(reconstruction, caption)['full']", percent=True)
    report.section("Reconstruction", f"""
{n} images from {len(urls)} shard(s), resized and centre-cropped to {tok.image_size} px, encoded to
{tok.grid_size[0]}×{tok.grid_size[1]} codes and decoded. PSNR is the mean of per-image PSNRs
(`psnr_pooled`: PSNR of the mean MSE). rFID compares the originals with their reconstructions
({fid.name}). `rfid_floor` is the FID between two disjoint halves A and B of the originals, and
`rfid_half` that of A against the reconstructions of B: the same sample counts, so the gap between
them is what tokenizing costs.""")
    rows = [{"metric": k, "value": m[k]} for k in ("psnr", "psnr_pooled", "ssim", "lpips", "rfid", "rkid",
                                                   "rfid_half", "rfid_floor")]
    report.table("reconstruction", rows)
    report.section("Codebook", "Usage: share of codes used at least once; perplexity: exp of the entropy of "
                   "the code histogram (equals the codebook size when every code is equally used).")
    report.table("codebook", [{"codebook_size": tok.codebook_size, "used": tok.codebook_size - m["unused_codes"],
                               "usage": m["codebook_usage"], "perplexity": m["codebook_perplexity"],
                               "tokens counted": m["tokens"]}], percent=("usage",))
    ncol = min(8, len(shown_orig))
    images, caps = [], []
    for s in range(0, len(shown_orig), ncol):  # originals on one row, their reconstructions below
        images += shown_orig[s:s + ncol] + shown_rec[s:s + ncol]
        caps += ["original"] * len(shown_orig[s:s + ncol]) + captions[s:s + ncol]
    report.grid("reconstructions", images, caps, "originals above, reconstructions below (with their PSNR)",
                ncol=ncol, cell=cell, caption_lines=1)
    report.write()
    return m


def _shape_scores(images: list, captions: Sequence[str]) -> list[dict] | None:
    """shapes.score of each reconstruction, or None when a caption is not a shapes caption."""
    try:
        for c in captions:
            shapes.parse_caption(c)
    except ValueError:
        return None  # not shapes data: this check does not apply
    return [shapes.score(img, c) for img, c in zip(images, captions)]
