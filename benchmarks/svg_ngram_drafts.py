"""Could n-gram lookup over the training corpus draft SVG tokens well enough for speculative decoding?

    python benchmarks/svg_ngram_drafts.py [--export runs/iconshop-demo/export] \
        [--corpus 'data/icons-common6/train-*.tar'] [--prompts 32] [--window 8]

An upper bound for corpus drafts (argen.transformer.drafts, which speculative decoding uses where an
export carries them): the training icons' token sequences give, for every context of the last few
tokens, the most frequent next token (longest context seen wins).
Sequences sampled sequentially from the export (its own sampling settings, the benchmark's held-out
prompts) are then replayed: at each position, how often the lookup names the token actually
sampled (hit rate), and how many tokens in a row it would name from there, up to ``--window``. A
point-mass draft is accepted with probability p(draft) ≤ 1, so ``1 + mean run`` bounds the tokens
per pass such drafts could give; Jacobi drafting's measured figure is in BENCHMARKS.md.

The same sequences also give a bound for *any* point-mass drafter, the model's own most likely token
included: a point mass on ``x`` is accepted with probability ``p(x) ≤ max p``, where ``p`` is what
sequential decoding samples from (guidance, grammar, temperature, top-k/p applied). Along the
sampled sequences, ``1 + Σ_k Π_{j<k} max p_j`` (up to ``--window`` drafts) estimates the most tokens per
pass such drafts could expect (estimated: a real chain of drafts would condition on its own guesses).
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import zlib
from pathlib import Path

import torch

from argen.data.shards import expand_shards
from argen.generator import Generator
from argen.transformer.drafts import CorpusDrafts
from argen.transformer.sampling import generate
from argen.transformer.speculative import token_probs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # also when imported rather than run as a script
from speculative import demo_prompts  # noqa: E402  (benchmarks/speculative.py: the speed benchmark's prompts)


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


@torch.no_grad()
def most_likely_mass(gen: Generator, ids: torch.Tensor, mask: torch.Tensor, null_ids: torch.Tensor,
                     null_mask: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """(B, L) sampled tokens -> (B, L): at each position, the largest probability of the distribution
    sequential decoding sampled that token from (teacher-forced, guided, grammar-masked, filtered)."""
    net, tok, s = gen.net, gen.target, gen.sampling
    inputs = net.shift_right(tokens)
    positions = torch.arange(inputs.shape[1])
    feats = tok.token_features(inputs, positions) if net.config.target_feature_sizes else None
    hidden = net.decode(net.encode(ids, mask), mask, inputs, feats)
    if s.cfg_scale is not None and s.cfg_scale != 1.0:  # the model's own guidance: [cond; uncond] states
        null_ids, null_mask = null_ids.expand(len(ids), -1), null_mask.expand(len(ids), -1)
        uncond = net.decode(net.encode(null_ids, null_mask), null_mask, inputs, feats)
        logits = net.guided_logits(torch.cat([hidden, uncond]), s.cfg_scale).float()
    else:
        logits = net.logits(hidden).float()
    grammar = tok.grammar()
    if grammar is not None:
        state = grammar.initial(len(tokens))
        states = []
        for t in tokens.T:
            states.append(state)
            state = grammar.step(state, t)
        logits = logits.masked_fill(~grammar.allowed[torch.stack(states, 1)], float("-inf"))
    return token_probs(logits, s.temperature, s.top_k, s.top_p).max(-1).values


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
    drafts = CorpusDrafts(seqs)
    prompts = demo_prompts("svg", args.prompts)
    ids, mask = gen._text(prompts)
    null_ids, null_mask = gen._text([""])
    s = gen.sampling
    out = generate(gen.net, ids, mask, tok, uncond_ids=null_ids, uncond_mask=null_mask, cfg_scale=s.cfg_scale,
                   temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                   seeds=[zlib.crc32(f"0:{i}".encode()) for i in range(len(prompts))])
    top = most_likely_mass(gen, ids, mask, null_ids, null_mask, out)
    hits = total = 0
    runs, chains = [], []
    for r, row in enumerate(out.tolist()):
        row = row[: row.index(tok.eos_id) + 1] if tok.eos_id in row else row
        for i in range(1, len(row)):
            hits += drafts.next_token(row[:i]) == row[i]
            total += 1
            prefix, run = row[:i], 0
            while run < args.window and i + run < len(row) and drafts.next_token(prefix) == row[i + run]:
                prefix = prefix + [row[i + run]]
                run += 1
            runs.append(run)
            chance, expected = 1.0, 1.0
            for j in range(i, min(i + args.window, len(row))):
                chance *= float(top[r, j])
                expected += chance
            chains.append(expected)
    mass = top[out != tok.pad_id] if tok.pad_id is not None else top.flatten()
    result = {"corpus_sequences": len(seqs), "positions": total, "hit_rate": hits / total,
              "mean_run": sum(runs) / len(runs), "tokens_per_pass_bound": 1 + sum(runs) / len(runs),
              "mean_most_likely": float(mass.mean()), "point_mass_bound": sum(chains) / len(chains)}
    print(f"{len(seqs)} corpus sequences; {total} sampled positions: next-token hit rate {result['hit_rate']:.3f}, "
          f"mean run {result['mean_run']:.2f} (window {args.window}): at most "
          f"{result['tokens_per_pass_bound']:.2f} tokens per pass")
    print(f"any point-mass drafter: the most likely token holds {result['mean_most_likely']:.3f} of p on average; "
          f"at most ~{result['point_mass_bound']:.2f} tokens per pass (window {args.window})")
    return result


if __name__ == "__main__":
    main()
