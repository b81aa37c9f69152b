"""SVG tokenizer benchmark: round trip quality, sequence lengths, throughput, hostile-input timings.

    python benchmarks/svg.py                 # all 7,447 Material Design icons, grids 200/128/64
    python benchmarks/svg.py --step 10       # every 10th icon (quick look)

Round trip: ``decode(encode(svg))`` against the original, rasterized at 64 px (4× supersampled,
see argen.svg.metrics). Throughput is compared with svgelements (parse + absolute path data for
every shape, the closest peer doing the same normalization) measured in the same run.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
import warnings

import numpy as np

from argen.svg import SVGError, SVGTokenizer
from argen.svg.metrics import pairwise_iou, raster_coverage


def mdi_svgs(step: int) -> list[str]:
    import material_design_icons_pack as m

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        icons = [getattr(m, n) for n in sorted(dir(m)) if isinstance(getattr(m, n), m.Icon)]
    return [i.svg for i in icons[::step]]


def round_trip(svgs: list[str], grids: list[int]) -> dict:
    originals = [raster_coverage(s) for s in svgs]
    out = {}
    for grid in grids:
        tok = SVGTokenizer(grid=grid)
        hard, soft, lengths, errors = [], [], [], {}
        for svg, a in zip(svgs, originals):
            try:
                ids = tok.encode(svg)
            except SVGError as e:
                errors[e.reason] = errors.get(e.reason, 0) + 1
                continue
            lengths.append(len(ids))
            b = raster_coverage(tok.decode(ids))
            ma, mb = a >= 0.5, b >= 0.5
            u = (ma | mb).sum()
            hard.append((ma & mb).sum() / u if u else 1.0)
            soft.append(np.minimum(a, b).sum() / max(np.maximum(a, b).sum(), 1e-9))
        lengths = np.array(lengths)
        out[grid] = {
            "icons": len(svgs), "encoded": len(lengths), "encode_rate": len(lengths) / len(svgs),
            "errors": errors, "iou_mean": float(np.mean(hard)), "iou_soft_mean": float(np.mean(soft)),
            "iou_min": float(np.min(hard)), "share_iou_ge_0.9": float(np.mean(np.array(hard) >= 0.9)),
            "length_percentiles": {p: float(np.percentile(lengths, p)) for p in (50, 90, 95, 99, 100)},
            "share_len_le_256": float(np.mean(lengths <= 256)), "share_len_le_512": float(np.mean(lengths <= 512)),
        }
    return out


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def throughput(svgs: list[str], repeats: int) -> dict:
    def encode_all():
        tok = SVGTokenizer()  # fresh: no cache
        for s in svgs:
            tok.encode(s)

    tok = SVGTokenizer()
    ids = [tok.encode(s) for s in svgs]

    def decode_all():
        for i in ids:
            tok.decode(i)

    res = {"encode_per_s": len(svgs) / timed(encode_all, repeats),
           "decode_per_s": len(svgs) / timed(decode_all, repeats)}
    try:
        import svgelements
    except ImportError:
        return res

    def peer_all():
        for s in svgs:
            doc = svgelements.SVG.parse(io.StringIO(s), reify=True)
            for el in doc.elements():
                if isinstance(el, svgelements.Shape):
                    svgelements.Path(el).d()

    res["svgelements_per_s"] = len(svgs) / timed(peer_all, repeats)
    res["encode_vs_svgelements"] = res["encode_per_s"] / res["svgelements_per_s"]
    return res


def hostile() -> dict:
    H = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">'
    laughs = ('<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "lol">' + "".join(
        f'<!ENTITY a{i + 1} "{("&a%s;" % (i or "")) * 10}">' for i in range(9)) + "]>" + H + "<text>&a9;</text></svg>")
    cases = {
        "billion laughs DTD": laughs,
        "external entity": '<!DOCTYPE s [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + H + "&x;</svg>",
        "non-XML text": "hello { world",
        "NaN coordinate": H + '<path d="M0 0L NaN 1L2 0Z"/></svg>',
        "inf coordinate": H + '<path d="M0 0L inf 1L2 0Z"/></svg>',
        "unknown path command": H + '<path d="M0 0B1 1Z"/></svg>',
        "20 MB path": H + '<path d="M0 0' + " L1 1" * 4_000_000 + '"/></svg>',
        "10,000 nested groups": H + "<g>" * 10_000 + '<path d="M0 0L1 0L1 1Z"/>' + "</g>" * 10_000 + "</svg>",
        "zero-size viewBox": '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 0 0"/>',
        "<use> exponential": H + '<path id="p0" d="M0 0L1 0L1 1Z"/>' + "".join(
            f'<g id="p{i + 1}">' + f'<use href="#p{i}"/>' * 10 + "</g>" for i in range(9)) + "</svg>",
        "40k-number path (under limits)": H + '<path d="M0 0' + " L1 1 L2 0" * 9_900 + '"/></svg>',
    }
    tok = SVGTokenizer()
    out = {}
    for name, text in cases.items():
        t = time.perf_counter()
        try:
            tok.encode(text)
            result = "encoded"
        except SVGError as e:
            result = f"SVGError({e.reason})"
        out[name] = {"ms": 1000 * (time.perf_counter() - t), "result": result}
    return out


def metrics_speed(n_train: int = 7447, n_samples: int = 200) -> dict:
    rng = np.random.default_rng(0)
    train = rng.random((n_train, 64 * 64)) < 0.2
    samples = rng.random((n_samples, 64 * 64)) < 0.2
    t = time.perf_counter()
    pairwise_iou(samples, train)
    return {"pairwise_iou_200x7447_s": time.perf_counter() - t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--step", type=int, default=1, help="use every STEP-th icon")
    ap.add_argument("--grids", type=int, nargs="+", default=[200, 128, 64])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    svgs = mdi_svgs(args.step)
    results = {"round_trip": round_trip(svgs, args.grids),
               "throughput": throughput(svgs[:: max(1, len(svgs) // 500)], args.repeats),
               "hostile": hostile(), "metrics": metrics_speed()}
    print(f"## Round trip on {len(svgs)} Material Design icons (IoU at 64 px)\n")
    print("| grid | encoded | IoU mean | soft IoU | IoU min | len p50 | p90 | p95 | p99 | max | ≤256 | ≤512 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for g, r in results["round_trip"].items():
        p = r["length_percentiles"]
        print(f"| {g} | {r['encode_rate']:.2%} | {r['iou_mean']:.4f} | {r['iou_soft_mean']:.4f} | "
              f"{r['iou_min']:.3f} | {p[50]:.0f} | {p[90]:.0f} | {p[95]:.0f} | {p[99]:.0f} | {p[100]:.0f} | "
              f"{r['share_len_le_256']:.1%} | {r['share_len_le_512']:.1%} |")
    t = results["throughput"]
    print(f"\n## Throughput (median of {args.repeats}, CPU)\n")
    print(f"encode {t['encode_per_s']:.0f} icons/s, decode {t['decode_per_s']:.0f} icons/s")
    if "svgelements_per_s" in t:
        print(f"svgelements parse+path {t['svgelements_per_s']:.0f} icons/s "
              f"-> argen encode is {t['encode_vs_svgelements']:.2f}x svgelements")
    print("\n## Hostile input (tokenizer.encode)\n")
    for name, r in results["hostile"].items():
        print(f"- {name}: {r['result']} in {r['ms']:.1f} ms")
    print(f"\npairwise IoU 200 × 7447 masks: {results['metrics']['pairwise_iou_200x7447_s']:.2f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)


if __name__ == "__main__":
    main()
