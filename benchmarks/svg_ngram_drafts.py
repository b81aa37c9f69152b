"""Could n-gram lookup over the training corpus draft SVG tokens well enough for speculative decoding?

    python benchmarks/svg_ngram_drafts.py [--export runs/iconshop-demo/export] \
        [--corpus 'data/icons-common6/train-*.tar'] [--prompts 32] [--window 8]

An upper bound, measured before building anything: the training icons' token sequences give, for
every context of the last 1–6 tokens, the most frequent next token (longest context seen wins).
Sequences sampled sequentially from the export (its own sampling settings, the benchmark's held-out
prompts) are then replayed: at each position, how often the lookup names the token actually
sampled (hit rate), and how many tokens in a row it would name from there, up to ``--window``. A
point-mass draft is accepted with probability p(draft) ≤ 1, so ``1 + mean run`` bounds the tokens
per pass such drafts could give; Jacobi drafting's measured figure is in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import torch

from argen.data.shards import expand_shards
from argen.generator import Generator
from argen.transformer.sampling import generate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # also when imported rather than run as a script
from speculative import demo_prompts  # noqa: E402  (benchmarks/speculative.py: the speed benchmark's prompts)

CONTEXTS = (6, 4, 3, 2, 1)


def corpus_sequences(tokenizer, shards: str) -> list[list[int]]:
    """Token ids of every SVG in the shards (those the tokenizer refuses are left out)."""
    seqs = []
    for url in expand_shards(shards):
        with tarfile.open(url) as tar:
            for m in tar:
                if m.isfile() and m.name.endswith(".svg"):
                    try:
                        seqs.append(tokenizer.encode(tar.extractfile(m).read().decode()).tolist())
                    except ValueError:
                        continue
    return seqs


def lookup_table(seqs: list[list[int]]) -> dict[tuple[int, ...], int]:
    """Context (the last n tokens, n in CONTEXTS) -> the most frequent next token in the corpus."""
    counts: dict[tuple[int, ...], Counter] = defaultdict(Counter)
    for s in seqs:
        for n in CONTEXTS:
            for i in range(n, len(s)):
                counts[tuple(s[i - n:i])][s[i]] += 1
    return {k: c.most_common(1)[0][0] for k, c in counts.items()}


def predict(table: dict, prefix: list[int]) -> int | None:
    for n in CONTEXTS:
        if len(prefix) >= n and (nxt := table.get(tuple(prefix[-n:]))) is not None:
            return nxt
    return None


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--export", default=str(ROOT / "runs/iconshop-demo/export"))
    p.add_argument("--corpus", default=str(ROOT / "data/icons-common6/train-*.tar"), help="training shards")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--window", type=int, default=8)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    gen = Generator.from_pretrained(args.export)
    tok = gen.target
    seqs = corpus_sequences(tok, args.corpus)
    table = lookup_table(seqs)
    prompts = demo_prompts("svg", args.prompts)
    ids, mask = gen._text(prompts)
    null_ids, null_mask = gen._text([""])
    s = gen.sampling
    out = generate(gen.net, ids, mask, tok, uncond_ids=null_ids, uncond_mask=null_mask, cfg_scale=s.cfg_scale,
                   temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                   seeds=[zlib.crc32(f"0:{i}".encode()) for i in range(len(prompts))])
    hits = total = 0
    runs = []
    for row in out.tolist():
        row = row[: row.index(tok.eos_id) + 1] if tok.eos_id in row else row
        for i in range(1, len(row)):
            hits += predict(table, row[:i]) == row[i]
            total += 1
            prefix, run = row[:i], 0
            while run < args.window and i + run < len(row) and predict(table, prefix) == row[i + run]:
                prefix = prefix + [row[i + run]]
                run += 1
            runs.append(run)
    result = {"corpus_sequences": len(seqs), "positions": total, "hit_rate": hits / total,
              "mean_run": sum(runs) / len(runs), "tokens_per_pass_bound": 1 + sum(runs) / len(runs)}
    print(f"{len(seqs)} corpus sequences; {total} sampled positions: next-token hit rate {result['hit_rate']:.3f}, "
          f"mean run {result['mean_run']:.2f} (window {args.window}): at most "
          f"{result['tokens_per_pass_bound']:.2f} tokens per pass")
    return result


if __name__ == "__main__":
    main()
