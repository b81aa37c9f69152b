"""Sampling speed: argen's KV-cached sampler against HF ``transformers`` BART ``generate()``.

Default mode (CPU, issue 5): one run builds an argen encoder-decoder and a
``BartForConditionalGeneration`` with the same dims and random weights (d_model 256, 4 + 4 layers,
4 heads, FFN 1024, text 32 tokens, 16 rows = 8 prompts x CFG cond/uncond, pure sampling) and
times both for 256 and 1024 new tokens (medians over repeats, runs interleaved so CPU contention
hits both alike), plus argen cached vs uncached at 1024, and prints per-step time by position.

    python benchmarks/sampling.py [--json] [--repeats 5] [--threads 2]

OpenMP's wait policy matters more than anything in the code: a decode step is ~100 small ops, and
with ``OMP_WAIT_POLICY=PASSIVE`` each one pays a thread wake-up (argen's step triples, HF's grows by
half). The script leaves the policy to the environment (libgomp's default spins briefly, close to
ACTIVE) and prints it; on a CPU shared with other jobs, ``OMP_WAIT_POLICY=PASSIVE`` keeps the
comparison stable.

Uncached decoding at 1024 tokens would take tens of minutes, so its time is the integral of
single uncached steps timed at several positions (the exact code of ``use_cache=False``); the
estimator is checked against a real ``generate(use_cache=False)`` of 64 tokens.

Roofline mode (GPU): tokens/s of a preset (e.g. parti-350m), eager vs ``torch.compile``, and the
share of the memory-bandwidth roofline (weights + KV bytes read per step / step time / measured
copy bandwidth). See ``benchmarks/gpu.sh``.

    python benchmarks/sampling.py roofline --preset parti-350m --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from argen.targets import TargetTokenizer
from argen.transformer import EncoderDecoder, TransformerConfig, config_from_preset, generate

VOCAB, TEXT_LEN, PROMPTS, CFG_SCALE = 8192, 32, 8, 3.0
DIMS = dict(d_model=256, n_heads=4, enc_layers=4, dec_layers=4, d_ff=1024)


class FixedLengthTarget(TargetTokenizer):
    """Benchmark target: any token may follow any other, exactly ``max_len`` tokens."""

    def __init__(self, vocab_size: int, max_len: int):
        self.vocab_size, self.max_len = vocab_size, max_len


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class StepTimer:
    """Per-step wall-clock intervals via argen's progress callback (or HF's logits processors)."""

    def __init__(self):
        self.stamps = [time.perf_counter()]

    def __call__(self, *args):
        self.stamps.append(time.perf_counter())
        return args[1] if len(args) == 2 and torch.is_tensor(args[1]) else None  # HF: pass scores on

    def steps_ms(self) -> list[float]:
        return [1e3 * (b - a) for a, b in zip(self.stamps, self.stamps[1:])]


# -- CPU: argen vs HF BART ---------------------------------------------------------------------
def build_models(max_len: int):
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    config = TransformerConfig(text_vocab_size=VOCAB, target_vocab_size=VOCAB, max_text_len=TEXT_LEN,
                               max_target_len=max_len, **DIMS)
    argen_model = EncoderDecoder(config).eval()
    bart_config = BartConfig(
        vocab_size=VOCAB, d_model=DIMS["d_model"], encoder_layers=DIMS["enc_layers"],
        decoder_layers=DIMS["dec_layers"], encoder_attention_heads=DIMS["n_heads"],
        decoder_attention_heads=DIMS["n_heads"], encoder_ffn_dim=DIMS["d_ff"], decoder_ffn_dim=DIMS["d_ff"],
        max_position_embeddings=max(max_len, TEXT_LEN) + 8, dropout=0.0, activation_function="gelu",
        pad_token_id=1, bos_token_id=0, eos_token_id=None, forced_eos_token_id=None,
        decoder_start_token_id=0)
    bart = BartForConditionalGeneration(bart_config).eval()
    return argen_model, bart


def run_hf(bart, ids, mask, n: int, timer: StepTimer | None = None) -> float:
    from transformers import LogitsProcessorList

    processors = LogitsProcessorList([timer]) if timer is not None else None
    start = time.perf_counter()
    out = bart.generate(input_ids=ids, attention_mask=mask, do_sample=True, max_new_tokens=n, min_new_tokens=n,
                        top_k=0, top_p=1.0, temperature=1.0, num_beams=1, use_cache=True,
                        logits_processor=processors)
    elapsed = time.perf_counter() - start
    assert out.shape[1] >= n, out.shape  # decoder start + n new tokens
    return elapsed


def run_argen(model, ids, mask, uncond, n: int, timer: StepTimer | None = None, use_cache: bool = True) -> float:
    start = time.perf_counter()
    out = generate(model, ids, mask, FixedLengthTarget(VOCAB, n), uncond_ids=uncond, cfg_scale=CFG_SCALE,
                   seeds=list(range(ids.shape[0])), use_cache=use_cache, callback=timer)
    elapsed = time.perf_counter() - start
    assert out.shape == (ids.shape[0], n), out.shape
    return elapsed


@torch.no_grad()
def uncached_step_s(model, rows, row_mask, t: int, repeats: int) -> float:
    """Median seconds of one ``use_cache=False`` step predicting token t (t + 1 decoder inputs)."""
    inputs = torch.randint(0, VOCAB, (rows.shape[0], t + 1))
    inputs[:, 0] = model.bos_id
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        memory = model.encode(rows, row_mask)  # same calls as generate(use_cache=False)
        model.logits(model.decode(memory, row_mask, inputs, None)[:, -1]).float()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def integrate(points: dict[int, float], n: int) -> float:
    """Total seconds of steps 0..n-1 from step times at a few positions (piecewise linear)."""
    xs = sorted(points)
    total = 0.0
    for t in range(n):
        j = max(i for i in range(len(xs)) if xs[i] <= t) if t >= xs[0] else 0
        if j == len(xs) - 1:
            total += points[xs[j]]
        else:
            a, b = xs[j], xs[j + 1]
            total += points[a] + (points[b] - points[a]) * (t - a) / (b - a)
    return total


def window_table(argen_ms: list[float], hf_ms: list[float], n: int, width: int = 32) -> list[dict]:
    rows = []
    for start in sorted({0, 128, 256, 512, 768, n - width}):
        if start + width > n:
            continue
        row = {"positions": f"{start}-{start + width - 1}",
               "argen_ms": statistics.median(argen_ms[start : start + width])}
        if hf_ms:
            row["hf_ms"] = statistics.median(hf_ms[start : start + width])
        rows.append(row)
    return rows


def cpu_main(args) -> dict:
    torch.set_num_threads(args.threads)
    lengths = sorted(args.lengths)
    n_max = max(lengths)
    argen_model, bart = build_models(n_max)
    dtype = getattr(torch, args.dtype)
    argen_model, bart = argen_model.to(dtype), bart.to(dtype)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, VOCAB, (PROMPTS, TEXT_LEN), generator=g)
    uncond = torch.randint(2, VOCAB, (PROMPTS, TEXT_LEN), generator=g)  # same text length: same compute
    mask = torch.ones_like(ids, dtype=torch.bool)
    hf_ids, hf_mask = torch.cat([ids, uncond]), torch.ones(2 * PROMPTS, TEXT_LEN, dtype=torch.long)
    rows = 2 * PROMPTS
    print(f"argen params {argen_model.num_parameters() / 1e6:.2f}M, "
          f"BART params {sum(p.numel() for p in bart.parameters()) / 1e6:.2f}M; {rows} rows, "
          f"{args.dtype}, {args.threads} threads (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), "
          f"torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.1f}")

    warmup = min(16, n_max)
    run_hf(bart, hf_ids, hf_mask, warmup)
    run_argen(argen_model, ids, mask, uncond, warmup)
    result: dict = {"rows": rows, "dtype": args.dtype, "threads": args.threads, "repeats": args.repeats,
                    "load_average_start": os.getloadavg()[0]}
    step_tables: dict[str, list[float]] = {}
    for n in lengths:
        hf_t, ar_t = [], []
        for r in range(args.repeats):  # interleaved, so load from other processes hits both alike
            last = r == args.repeats - 1 and n == n_max  # per-step table from the last (warmest) repeat
            hf_timer, ar_timer = (StepTimer(), StepTimer()) if last else (None, None)
            hf_t.append(run_hf(bart, hf_ids, hf_mask, n, hf_timer))
            ar_t.append(run_argen(argen_model, ids, mask, uncond, n, ar_timer))
            if ar_timer is not None:
                step_tables["argen"], step_tables["hf"] = ar_timer.steps_ms(), hf_timer.steps_ms()
            print(f"  n={n} repeat {r}: HF {hf_t[-1]:.2f}s  argen {ar_t[-1]:.2f}s", flush=True)
        hf_s, ar_s = statistics.median(hf_t), statistics.median(ar_t)
        result[f"hf_ms_per_step_{n}"] = 1e3 * hf_s / n
        result[f"argen_ms_per_step_{n}"] = 1e3 * ar_s / n
        result[f"hf_tokens_per_s_{n}"] = rows * n / hf_s
        result[f"argen_tokens_per_s_{n}"] = rows * n / ar_s
        result[f"argen_vs_hf_{n}"] = hf_s / ar_s
        pairs = sorted(h / a for h, a in zip(hf_t, ar_t))  # each HF run against the argen run after it
        result[f"argen_vs_hf_{n}_pairs"] = [pairs[0], statistics.median(pairs), pairs[-1]]
        print(f"n={n}: HF {1e3 * hf_s / n:.2f} ms/step, argen {1e3 * ar_s / n:.2f} ms/step "
              f"-> argen {hf_s / ar_s:.2f}x HF (pairwise {pairs[0]:.2f}-{pairs[-1]:.2f})", flush=True)

    # Uncached: integrate single-step times; check the estimator on a real 64-token run.
    text_rows, text_mask = torch.cat([ids, uncond]), torch.cat([mask, mask])
    probe = sorted({t for t in (0, 32, 64, 128, 256, 512, 768) if t < n_max} | {n_max - 1})
    points = {t: uncached_step_s(argen_model, text_rows, text_mask, t, 3 if t <= 256 else 1) for t in probe}
    uncached_s = integrate(points, n_max)
    check_n = min(64, n_max)
    real_64 = run_argen(argen_model, ids, mask, uncond, check_n, use_cache=False)
    cached_s = result[f"argen_ms_per_step_{n_max}"] * n_max / 1e3
    result[f"uncached_s_{n_max}_estimated"] = uncached_s
    result[f"uncached_estimate_vs_real_{check_n}"] = integrate(points, check_n) / real_64
    result[f"cached_vs_uncached_{n_max}"] = uncached_s / cached_s
    print(f"uncached: step ms at positions {({t: round(1e3 * s, 1) for t, s in points.items()})}; "
          f"~{uncached_s:.0f}s for {n_max} tokens vs cached {cached_s:.1f}s -> cached "
          f"{uncached_s / cached_s:.0f}x (estimator / real at {check_n} tokens: "
          f"{result[f'uncached_estimate_vs_real_{check_n}']:.2f})")

    result["load_average_end"] = os.getloadavg()[0]
    if step_tables:
        table = window_table(step_tables["argen"], step_tables["hf"], n_max)
        result["per_step_table"] = table
        print(f"\nper-step time by position (n={n_max}, median over 32-step windows, last repeat)")
        print("| positions | argen ms/step | HF ms/step |\n|---|---|---|")
        for row in table:
            print(f"| {row['positions']} | {row['argen_ms']:.2f} | {row.get('hf_ms', float('nan')):.2f} |")
    return result


# -- GPU: roofline -----------------------------------------------------------------------------
def copy_bandwidth(device: torch.device, nbytes: int = 1 << 30) -> float:
    """Bytes/s of a device-to-device copy (read + write counted), median of 5."""
    x = torch.empty(nbytes // 4, dtype=torch.float32, device=device)
    y = torch.empty_like(x)
    y.copy_(x)
    times = []
    for _ in range(5):
        _sync(device)
        start = time.perf_counter()
        y.copy_(x)
        _sync(device)
        times.append(time.perf_counter() - start)
    return 2 * nbytes / statistics.median(times)


def bytes_per_step(model: EncoderDecoder, rows: int, text_len: int, n: int, itemsize: int) -> float:
    """Weights + KV read by one decode step, averaged over positions 0..n-1."""
    c = model.config
    weights = 0
    for block in model.decoder:
        for name, p in block.named_parameters():
            if not name.startswith("cross_attn.kv."):  # memory K/V are cached, not re-projected
                weights += p.numel()
    weights += c.target_vocab_size * c.d_model + c.d_model * 2  # output head, final norm
    # mean filled length; the first layer caches one row per cond/uncond pair (they share its tokens)
    self_kv = (c.dec_layers - 0.5) * 2 * rows * c.d_model * (n + 1) / 2
    cross_kv = c.dec_layers * 2 * rows * c.d_model * text_len
    return (weights + self_kv + cross_kv) * itemsize


def roofline_main(args) -> dict:
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    config = config_from_preset(args.preset)
    with device:
        model = EncoderDecoder(config).to(dtype).eval()
    n, prompts, S = args.new_tokens, args.prompts, min(args.text_len, config.max_text_len)
    ids = torch.randint(0, config.text_vocab_size, (prompts, S), device=device)
    uncond = torch.randint(0, config.text_vocab_size, (prompts, S), device=device)
    mask = torch.ones_like(ids, dtype=torch.bool)
    target = FixedLengthTarget(config.target_vocab_size, n)
    rows = 2 * prompts
    bw = copy_bandwidth(device)
    need = bytes_per_step(model, rows, S, n, torch.finfo(dtype).bits // 8)
    result = {"preset": args.preset, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "dtype": args.dtype, "prompts": prompts, "rows": rows, "new_tokens": n,
              "copy_bandwidth_GBps": bw / 1e9, "bytes_per_step_MB": need / 1e6}
    for name, compiled in (("eager", False), ("compiled", True)):
        def run(compiled=compiled):
            return generate(model, ids, mask, target, uncond_ids=uncond, cfg_scale=CFG_SCALE,
                            seeds=list(range(prompts)), compile=compiled)

        start = time.perf_counter()
        run()  # warm-up (compiles and records CUDA graphs)
        _sync(device)
        warm = time.perf_counter() - start
        times = []
        for _ in range(args.repeats):
            _sync(device)
            start = time.perf_counter()
            run()
            _sync(device)
            times.append(time.perf_counter() - start)
        s = statistics.median(times)
        step_s = s / n
        result[f"{name}_tokens_per_s"] = prompts * n / s
        result[f"{name}_ms_per_step"] = 1e3 * step_s
        result[f"{name}_roofline_share"] = need / step_s / bw
        result[f"{name}_warmup_s"] = warm
        print(f"{name}: {1e3 * step_s:.2f} ms/step, {prompts * n / s:.0f} tokens/s, "
              f"{100 * need / step_s / bw:.1f}% of roofline (warm-up {warm:.1f}s)", flush=True)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="cpu", choices=["cpu", "roofline"])
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="cpu mode: torch threads")
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024], help="cpu mode: new tokens")
    parser.add_argument("--preset", default="parti-350m", help="roofline mode: model preset")
    parser.add_argument("--device", default="cuda", help="roofline mode: device")
    parser.add_argument("--dtype", default=None,
                        help="weights/activations of both models (default: float32 in cpu mode, bfloat16 in roofline)")
    parser.add_argument("--prompts", type=int, default=16, help="roofline mode: prompts (x2 rows with CFG)")
    parser.add_argument("--new-tokens", type=int, default=256, help="roofline mode: tokens per row")
    parser.add_argument("--text-len", type=int, default=32, help="roofline mode: text tokens per row")
    args = parser.parse_args(argv)
    args.dtype = args.dtype or ("float32" if args.mode == "cpu" else "bfloat16")
    result = cpu_main(args) if args.mode == "cpu" else roofline_main(args)
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
