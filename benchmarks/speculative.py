"""Speculative Jacobi decoding against sequential decoding, on trained exports, in one run.

    python benchmarks/speculative.py [--image EXPORT] [--svg EXPORT] [--json] [--repeats 16]
    python benchmarks/speculative.py --windows 2 4 8 12 16   # the window sweep behind the default
    python benchmarks/speculative.py --batches 1 --bookkeeping   # + the loop's own ms per pass

For each demo (image: shapes prompts on ``runs/parti-demo/export``; SVG: held-out icon prompts on
``runs/iconshop-demo/export``) and batch size (1 and 16), sequential and speculative decoding run
the same prompts and seeds with the export's own sampling settings (guidance, temperature, top-k/p),
interleaved so that CPU contention hits both alike. Reported: decoder passes per sample (a batch's
passes: every row waits for it), the mean accepted length (tokens per pass per row), and wall
time, as medians over repeats. Ratios are sequential / speculative (higher is better) per token of
the batch's output over all repeats: the two decoders draw different samples, and where EOS ends
them (SVG) their lengths differ, so medians of whole-sample passes would compare unequal work. Acceptance
is a property of trained weights: random weights say nothing about it. An export that carries its
training targets (``drafts.safetensors``: the SVG demo) drafts from them as ``Generator`` does;
``--no-corpus`` measures Jacobi drafts alone.

With ``--json`` the last line is ``{"image": {"passes_ratio_b1": ..., "wall_ratio_b1": ...,
"passes_ratio_b16": ..., "wall_ratio_b16": ...}, "svg": {...}}`` for the window ``--window``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # a shared CPU: see benchmarks/sampling.py

import argparse
import json
import statistics
import time
import zlib
from pathlib import Path

import torch

from argen.generator import Generator
from argen.transformer.sampling import generate
from argen.transformer.speculative import SpeculativeStats, generate_speculative

ROOT = Path(__file__).resolve().parents[1]
DEMOS = {"image": str(ROOT / "runs/parti-demo/export"), "svg": str(ROOT / "runs/iconshop-demo/export")}


def demo_prompts(kind: str, n: int) -> list[str]:
    """Prompts the demo was made for: the shapes suite, or held-out icon captions."""
    if kind == "image":
        from argen.data.shapes import prompt_suite

        suite = prompt_suite()
    else:
        from argen.eval.svg import heldout_icons

        suite = [r.prompt for r in heldout_icons(n)]
    step = max(1, len(suite) // n)
    return (suite[::step] * n)[:n]


def run_once(gen: Generator, prompts: list[str], seed: int, window: int) -> dict:
    """One batch of ``prompts``: passes, accepted length and wall seconds (window 0: sequential)."""
    ids, mask = gen._text(prompts)
    null_ids, null_mask = gen._text([""])
    s = gen.sampling
    kw = dict(uncond_ids=null_ids, uncond_mask=null_mask, cfg_scale=s.cfg_scale, temperature=s.temperature,
              top_k=s.top_k, top_p=s.top_p, seeds=[zlib.crc32(f"{seed}:{i}".encode()) for i in range(len(ids))])
    start = time.perf_counter()
    if window:
        stats = SpeculativeStats()
        tokens = generate_speculative(gen.net, ids, mask, gen.target, window=window, stats=stats,
                                      corpus=gen.corpus, **kw)
        passes, accepted = stats.passes, stats.mean_accepted
    else:
        tokens = generate(gen.net, ids, mask, gen.target, **kw)
        passes, accepted = tokens.shape[1], 1.0  # a prefill of BOS, then one pass per token
    return {"wall_s": time.perf_counter() - start, "passes": passes, "accepted": accepted,
            "tokens": tokens.shape[1]}


def compare(gen: Generator, kind: str, batch: int, windows: list[int], repeats: int) -> dict[int, dict]:
    """Medians per window (0: sequential) over ``repeats`` batches of different prompts and seeds."""
    prompts = demo_prompts(kind, batch * repeats)
    for w in windows:  # warm-up: allocation, packing, lazy imports
        run_once(gen, prompts[:batch], 10**6, w)
    runs = {w: [] for w in windows}
    for r in range(repeats):
        for w in windows:
            runs[w].append(run_once(gen, prompts[r * batch : (r + 1) * batch], r, w))
    rows = {w: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for w, rs in runs.items()}
    for w, rs in runs.items():  # per token over all repeats: EOS ends the two decoders' draws at different lengths
        tokens = sum(x["tokens"] for x in rs)
        rows[w]["passes_per_token"] = sum(x["passes"] for x in rs) / tokens
        rows[w]["s_per_token"] = sum(x["wall_s"] for x in rs) / tokens
    return rows


def bookkeeping_ms(gen: Generator, kind: str, window: int, repeats: int) -> float:
    """Median ms per pass of everything but the model, at batch 1: each verify pass returns the
    model's real output for the first window of its shape, kept, so only the loop's own work is timed."""
    net, kept = gen.net, {}
    real = net.decode_window

    def fixed(x, *args, **kwargs):
        if x.shape not in kept:
            kept[x.shape] = real(x, *args, **kwargs)
        return kept[x.shape].clone()

    net.decode_window = fixed
    try:
        prompt = demo_prompts(kind, 1)
        run_once(gen, prompt, 10**6, window)  # warm-up
        times = []
        for r in range(repeats):
            out = run_once(gen, prompt, r, window)
            times.append(out["wall_s"] / out["passes"] * 1e3)
    finally:
        del net.decode_window  # the instance attribute: the method is back
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", default=DEMOS["image"], help="image generator export")
    p.add_argument("--svg", default=DEMOS["svg"], help="SVG generator export")
    p.add_argument("--kinds", nargs="+", choices=("image", "svg"), default=["image", "svg"],
                   help="which demos to run (the JSON holds those run)")
    p.add_argument("--window", type=int, default=None,
                   help="the window the JSON reports (default: each target's speculative_window)")
    p.add_argument("--windows", type=int, nargs="+", default=None,
                   help="more windows to measure at batch 1 (the sweep that chose the default)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--repeats", type=int, default=16,
                   help="batches of different prompts and seeds per setting (fewer: noisier medians)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bookkeeping", action="store_true",
                   help="also the loop's own ms per pass at batch 1, the model's output held fixed")
    p.add_argument("--no-corpus", action="store_true",
                   help="draft without the export's training corpus (drafts.safetensors), as before it had one")
    p.add_argument("--json", action="store_true", help="last line: the ratios as JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown") if Path("/proc/cpuinfo").exists() else "unknown"
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu}, {args.threads} thread(s), "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}")
    result, ratios = {}, {}
    for kind in args.kinds:
        gen = Generator.from_pretrained(getattr(args, kind), device=args.device)
        if args.no_corpus:
            gen.corpus = None
        print(f"\n## {kind}: {getattr(args, kind)}  sampling {gen.sampling.to_dict()}")
        print(f"{'batch':>5} {'decoder':>14} {'passes':>7} {'accepted':>9} {'tokens':>7} {'wall s':>8} "
              f"{'passes x':>9} {'wall x':>7}")
        result[kind], ratios[kind] = {}, {}
        window = args.window or gen.target.speculative_window
        for batch in args.batches:
            extra = [w for w in (args.windows or []) if w != window] if batch == 1 else []
            rows = compare(gen, kind, batch, [0, window, *extra], args.repeats)
            seq = rows[0]
            for w, m in rows.items():
                px, wx = seq["passes_per_token"] / m["passes_per_token"], seq["s_per_token"] / m["s_per_token"]
                name = "sequential" if w == 0 else f"speculative {w}"
                print(f"{batch:>5} {name:>14} {m['passes']:>7.1f} {m['accepted']:>9.2f} {m['tokens']:>7.0f} "
                      f"{m['wall_s']:>8.3f} {px:>9.2f} {wx:>7.2f}")
            result[kind][batch] = {str(w): m for w, m in rows.items()}
            spec = rows[window]
            ratios[kind][f"passes_ratio_b{batch}"] = round(seq["passes_per_token"] / spec["passes_per_token"], 3)
            ratios[kind][f"wall_ratio_b{batch}"] = round(seq["s_per_token"] / spec["s_per_token"], 3)
        if args.bookkeeping:
            ms = bookkeeping_ms(gen, kind, window, args.repeats)
            result[kind]["bookkeeping_ms_per_pass"] = ms
            print(f"bookkeeping at batch 1, window {window}: {ms:.3f} ms per pass (the model's output held fixed)")
    if args.json:
        print(json.dumps(ratios))
    return {"ratios": ratios, "runs": result}


if __name__ == "__main__":
    main()
