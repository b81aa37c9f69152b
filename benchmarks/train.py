"""Training-step benchmarks.

``compare`` (CPU by default): one training step (forward, loss, backward, AdamW step) of argen's
encoder-decoder against Hugging Face ``transformers``' ``BartForConditionalGeneration`` with the same
dims, batch, optimizer and precision, measured alternately in the same process; median step time
over the repeats and the ratio HF / argen (> 1: argen is faster).

``mfu`` (GPU): tokens/s and model FLOPs utilization of argen's training step for a preset (default
parti-350m, bf16 autocast as Lightning's ``bf16-mixed``), eager vs ``torch.compile``, Apex vs native
kernels when Apex is importable. FLOPs per step come from :mod:`argen.throughput`.

    python benchmarks/train.py compare --json
    python benchmarks/train.py mfu --device cuda --variants eager,compiled --json

With ``--json`` the last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from argen.optim import adamw, param_groups
from argen.throughput import peak_flops, training_flops
from argen.transformer.model import EncoderDecoder, config_from_preset


def make_batch(B: int, S: int, L: int, text_vocab: int, target_vocab: int, device, seed: int = 0):
    """Text rows of random lengths (S/2..S, padded to S) and full-length targets."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, text_vocab, (B, S), generator=g)
    lengths = torch.randint(max(2, S // 2), S + 1, (B,), generator=g)
    mask = torch.arange(S)[None] < lengths[:, None]
    ids[~mask] = 0
    targets = torch.randint(0, target_vocab, (B, L), generator=g)
    return ids.to(device), mask.to(device), targets.to(device)


def precision_context(device: torch.device, dtype: str):
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, dtype))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- compare: argen vs HF BART ------------------------------------------------------------------------
def bart_like(config):
    """An HF BART with argen's dims: one shared vocabulary of target ids + BOS, learned positions,
    GELU MLPs, no dropout, SDPA attention."""
    from transformers import BartConfig, BartForConditionalGeneration

    V = config.target_vocab_size
    hf = BartConfig(vocab_size=V + 1, d_model=config.d_model, encoder_layers=config.enc_layers,
                    decoder_layers=config.dec_layers, encoder_attention_heads=config.n_heads,
                    decoder_attention_heads=config.n_heads, encoder_ffn_dim=config.d_ff,
                    decoder_ffn_dim=config.d_ff, max_position_embeddings=max(config.max_text_len,
                                                                             config.max_target_len),
                    dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, activation_function="gelu",
                    pad_token_id=0, bos_token_id=V, eos_token_id=V, decoder_start_token_id=V,
                    forced_eos_token_id=None, scale_embedding=False)
    return BartForConditionalGeneration._from_config(hf, attn_implementation="sdpa")


def compare(args) -> dict:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, S, L = args.batch, args.text_len, args.target_len
    # Text and target share one vocabulary so BART (one shared table) and argen see the same sizes.
    config = config_from_preset(args.preset, text_vocab_size=args.vocab, target_vocab_size=args.vocab,
                                max_text_len=S, max_target_len=L, target_feature_sizes=(), dropout=0.0)
    argen_net = EncoderDecoder(config).to(device).train()
    hf_net = bart_like(config).to(device).train()
    ids, mask, targets = make_batch(B, S, L, args.vocab, args.vocab, device)
    inputs = argen_net.shift_right(targets)

    def argen_loss():
        logits = argen_net(ids, mask, inputs)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

    def hf_loss():
        return hf_net(input_ids=ids, attention_mask=mask.long(), decoder_input_ids=inputs, labels=targets).loss

    # the same optimizer for both: argen's AdamW with its parameter groups
    runs = {"argen": (argen_loss, adamw(param_groups(argen_net, 0.01), lr=1e-4, device=device)),
            "hf_bart": (hf_loss, adamw(param_groups(hf_net, 0.01), lr=1e-4, device=device))}
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    losses = {}
    for i in range(args.warmup + args.repeats):
        order = list(runs) if i % 2 == 0 else list(runs)[::-1]  # alternate who goes first
        for name in order:
            loss_fn, opt = runs[name]
            sync(device)
            t, c = time.perf_counter(), time.process_time()
            with precision_context(device, args.dtype):
                loss = loss_fn()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sync(device)
            if i >= args.warmup:
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
            losses.setdefault(name, float(loss.detach()))
    profile = {name: op_shares(*runs[name], device, args.dtype) for name in runs} if args.profile else None
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    flops = training_flops(config, S, L) * B
    return {
        "benchmark": "train_step_vs_hf_bart", "device": str(device), "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "dtype": args.dtype, "preset": args.preset,
        "batch": B, "text_len": S, "target_len": L, "vocab": args.vocab, "repeats": args.repeats,
        "params": {"argen": sum(p.numel() for p in argen_net.parameters()),
                   "hf_bart": sum(p.numel() for p in hf_net.parameters())},
        "initial_loss": losses, "gflop_per_step": flops / 1e9,
        "median_step_s": med, "median_step_cpu_s": med_cpu,
        "gflops": {k: flops / v / 1e9 for k, v in med.items()},
        "ratio": med["hf_bart"] / med["argen"], "ratio_cpu_time": med_cpu["hf_bart"] / med_cpu["argen"],
        "goal_ratio": 1.2, "load_avg_1min": os.getloadavg()[0], "cores": os.cpu_count(), "profile": profile,
    }


def op_shares(loss_fn, opt, device, dtype: str, steps: int = 3) -> dict:
    """Share of self time (torch profiler, ``steps`` training steps) in matmuls, attention and the rest,
    and the matmul milliseconds per step: where the two models' steps can and cannot differ."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            with precision_context(device, dtype):
                loss = loss_fn()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    ops = {e.key: e.self_cpu_time_total for e in prof.key_averages()}  # microseconds
    total = sum(ops.values())
    matmul = sum(t for k, t in ops.items() if k in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"))
    attention = sum(t for k, t in ops.items() if "scaled_dot_product" in k)
    return {"matmul": matmul / total, "attention": attention / total, "other": 1 - (matmul + attention) / total,
            "matmul_ms_per_step": matmul / steps / 1e3}


# -- mfu: argen on a GPU --------------------------------------------------------------------------
def apex_available() -> bool:
    try:
        from apex.normalization import FusedLayerNorm  # noqa: F401
        from apex.optimizers import FusedAdam  # noqa: F401
    except Exception:
        return False
    return torch.cuda.is_available()


@contextlib.contextmanager
def kernels(apex: bool):
    """Build with Apex's fused norms (``apex=True``) or force native ones, whatever is installed."""
    import argen.nn

    original = argen.nn._apex_norms
    if not apex:
        argen.nn._apex_norms = lambda: None
    try:
        yield
    finally:
        argen.nn._apex_norms = original


def measure(config, variant: str, args, device: torch.device, batch: int) -> dict:
    apex, compiled = variant.startswith("apex"), variant.endswith("compiled")
    torch.manual_seed(0)
    with kernels(apex):
        net = EncoderDecoder(config).to(device).train()
    groups = param_groups(net, 0.01)
    opt = adamw(groups, lr=1e-4, device=device) if apex else torch.optim.AdamW(groups, lr=1e-4, fused=True)
    model = torch.compile(net) if compiled else net
    S, L = args.text_len, config.max_target_len
    ids, mask, targets = make_batch(batch, S, L, config.text_vocab_size, config.target_vocab_size, device)
    inputs = net.shift_right(targets)
    pos = torch.arange(L, device=device)
    n_feat = len(config.target_feature_sizes)
    features = torch.stack([pos % n for n in config.target_feature_sizes], -1)[None].expand(batch, -1, -1) \
        if n_feat else None

    def step():
        with precision_context(device, args.dtype):
            logits = model(ids, mask, inputs, features)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        loss = step()
    sync(device)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync(device)
    elapsed = time.perf_counter() - t0
    flops = training_flops(config, S, L) * batch * args.steps
    out = {"variant": variant, "batch": batch, "step_s": elapsed / args.steps, "warmup_s": warm_s,
           "tokens_per_s": batch * L * args.steps / elapsed, "tflops": flops / elapsed / 1e12,
           "loss": float(loss.detach())}
    if device.type == "cuda":
        out["max_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    peak = args.peak_flops
    if peak is None and device.type == "cuda":
        precision = "32-true" if args.dtype == "float32" else "bf16-mixed"
        peak = peak_flops(torch.cuda.get_device_name(device), precision)
    if peak:
        out["mfu"] = flops / elapsed / peak
    return out


def mfu(args) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    config = config_from_preset(args.preset, target_feature_sizes=(32, 32), dropout=0.0,
                                **({"checkpointing": True} if args.checkpointing else {}))
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - {"eager", "compiled", "apex-eager", "apex-compiled"}
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; use eager, compiled, apex-eager, apex-compiled")
    has_apex = apex_available()
    if has_apex and args.apex_too and "apex-eager" not in variants:
        variants.append("apex-eager")  # the kernels' difference; compiled graphs fuse the norms anyway
    results, skipped = [], []
    for variant in variants:
        if variant.startswith("apex") and not has_apex:
            skipped.append(f"{variant}: apex not importable")
            continue
        batch, r = args.batch, None
        while r is None:
            try:
                r = measure(config, variant, args, device, batch)
            except torch.OutOfMemoryError:
                if batch == 1:
                    raise
            if r is None:  # outside the except block, so the failed attempt's tensors are freed
                gc.collect()
                torch.cuda.empty_cache()
                batch //= 2  # report at the largest batch that fits
                print(f"{variant}: out of memory, retrying with batch {batch}", file=sys.stderr)
        print(f"{variant:>14}: {r['tokens_per_s']:9.0f} tokens/s  {r['tflops']:6.1f} TFLOP/s  "
              f"MFU {r.get('mfu', float('nan')):6.1%}  step {r['step_s'] * 1e3:7.1f} ms  batch {batch}  "
              f"(warm-up {r['warmup_s']:.0f} s)", flush=True)
        results.append(r)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return {"benchmark": "train_mfu", "device": name, "torch": torch.__version__, "preset": args.preset,
            "dtype": args.dtype, "text_len": args.text_len, "target_len": config.max_target_len,
            "gflop_per_target_token": training_flops(config, args.text_len, config.max_target_len)
            / config.max_target_len / 1e9, "apex": has_apex, "results": results, "skipped": skipped,
            "goal_mfu": 0.45}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="argen vs HF BART, one training step, same dims (CPU by default)")
    c.add_argument("--preset", default="demo")
    c.add_argument("--batch", type=int, default=8)
    c.add_argument("--text-len", type=int, default=32)
    c.add_argument("--target-len", type=int, default=256)
    c.add_argument("--vocab", type=int, default=512)
    c.add_argument("--repeats", type=int, default=10)
    c.add_argument("--warmup", type=int, default=2)
    c.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    c.add_argument("--device", default="cpu")
    c.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    c.add_argument("--profile", action="store_true", help="also report each step's share in matmuls and attention")
    m = sub.add_parser("mfu", help="argen tokens/s and MFU for a preset on a GPU")
    m.add_argument("--preset", default="parti-350m")
    m.add_argument("--batch", type=int, default=32, help="per step; halved until it fits")
    m.add_argument("--text-len", type=int, default=128)
    m.add_argument("--steps", type=int, default=20)
    m.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    m.add_argument("--variants", default="eager,compiled")
    m.add_argument("--apex-too", action="store_true", help="also run apex-eager when Apex is importable")
    m.add_argument("--checkpointing", action="store_true", help="activation checkpointing (as the FSDP recipes)")
    m.add_argument("--peak-flops", type=float, default=None, help="peak FLOP/s of the device (default: table)")
    m.add_argument("--device", default="cuda")
    m.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    for p in (c, m):
        p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    if args.command == "compare":
        for name in ("batch", "text_len", "target_len", "vocab", "repeats"):
            if getattr(args, name) < 1:
                parser.error(f"--{name.replace('_', '-')} must be >= 1")
        result = compare(args)
        s = result["median_step_s"]
        print(f"argen   {s['argen'] * 1e3:8.1f} ms/step  ({result['gflops']['argen']:.1f} GFLOP/s)")
        print(f"HF BART {s['hf_bart'] * 1e3:8.1f} ms/step  ({result['gflops']['hf_bart']:.1f} GFLOP/s)")
        print(f"ratio HF/argen: {result['ratio']:.3f} wall time, {result['ratio_cpu_time']:.3f} CPU time "
              f"(goal >= {result['goal_ratio']}; {result['repeats']} repeats, median)")
        for name, shares in (result["profile"] or {}).items():
            print(f"{name:8s} profile: matmul {shares['matmul']:.0%} ({shares['matmul_ms_per_step']:.0f} ms/step), "
                  f"attention {shares['attention']:.0%}, other {shares['other']:.0%}")
        if result["load_avg_1min"] > result["cores"] and result["threads"] > 1:
            print(f"note: load average {result['load_avg_1min']:.1f} on {result['cores']} cores: threads spin-wait "
                  "for each other at every op; --threads 1 gives steadier figures", file=sys.stderr)
    else:
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise SystemExit("mfu: no CUDA device visible to torch (use --device cpu for a dry run)")
        result = mfu(args)
    if args.json:
        print(json.dumps(result, default=lambda x: None if isinstance(x, float) and math.isnan(x) else str(x)))
    return result


if __name__ == "__main__":
    main()
