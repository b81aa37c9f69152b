"""Does speculative decoding sample what sequential decoding samples, on trained weights?

    python benchmarks/speculative_histograms.py [--export runs/iconshop-demo/export] \
        [--prompt 'heart filled'] [--samples 1024] [--positions 40]

Draws ``--samples`` samples of one prompt with each decoder (the export's own sampling settings;
seeds 0.. for sequential, 10,000.. for speculative, so the draws are independent), then tests, with
a chi-square test of homogeneity, the token histogram at each of the first ``--positions`` positions,
and compares the output lengths (Kolmogorov-Smirnov) and the share of samples that reach the
length limit. The unit tests check exactness on a toy model (tests/test_speculative.py); this is
the same question asked of a demo export. Results: BENCHMARKS.md, "Speculative decoding".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import chi2_contingency, ks_2samp

from argen.generator import Generator
from argen.transformer.sampling import generate
from argen.transformer.speculative import generate_speculative

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when imported rather than run as a script
from speculative import DEMOS  # noqa: E402  (benchmarks/speculative.py: the demo exports)


def lengths(tokens: torch.Tensor, gen: Generator) -> np.ndarray:
    """Tokens written before EOS, per row."""
    t = gen.target
    live = torch.ones_like(tokens, dtype=torch.bool)
    for special in (t.pad_id, t.eos_id):
        if special is not None:
            live &= tokens != special
    return live.sum(1).numpy()


def compare(gen: Generator, prompt: str, samples: int, positions: int) -> dict:
    """Both decoders' samples of ``prompt``: per-position chi-square p-values, length test, limit shares."""
    ids, mask = gen._text([prompt] * samples)
    null_ids, null_mask = gen._text([""])
    kw = dict(uncond_ids=null_ids, uncond_mask=null_mask,
              **{k: v for k, v in gen.sampling.to_dict().items() if v is not None})
    seq = generate(gen.net, ids, mask, gen.target, seeds=list(range(samples)), **kw)
    spec = generate_speculative(gen.net, ids, mask, gen.target, seeds=list(range(10_000, 10_000 + samples)),
                                corpus=gen.corpus, **kw)  # the export's corpus drafts, as Generator uses them
    p_values = {}
    for pos in range(min(positions, seq.shape[1], spec.shape[1])):
        a, b = seq[:, pos].numpy(), spec[:, pos].numpy()
        table = np.array([[np.sum(a == k) for k in np.union1d(a, b)], [np.sum(b == k) for k in np.union1d(a, b)]])
        if table.shape[1] > 1:
            p_values[pos] = float(chi2_contingency(table)[1])
    la, lb = lengths(seq, gen), lengths(spec, gen)
    limit = gen.target.max_len - 1  # the tokens that fit before a final EOS
    return {"positions_tested": len(p_values), "min_p": min(p_values.values()) if p_values else None,
            "below_0.01": sorted(k for k, p in p_values.items() if p < 0.01),
            "mean_length": (float(la.mean()), float(lb.mean())), "length_ks_p": float(ks_2samp(la, lb).pvalue),
            "at_limit": (float((la >= limit).mean()), float((lb >= limit).mean()))}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--export", default=DEMOS["svg"])
    p.add_argument("--prompt", default="heart filled")
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--positions", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    r = compare(Generator.from_pretrained(args.export), args.prompt, args.samples, args.positions)
    print(f"{args.samples} samples of {args.prompt!r} per decoder, {args.export}")
    print(f"per-position chi-square: {r['positions_tested']} positions, min p {r['min_p']:.4f}, "
          f"p < 0.01 at {r['below_0.01'] or 'none'}")
    print(f"mean length sequential {r['mean_length'][0]:.1f}, speculative {r['mean_length'][1]:.1f} "
          f"(KS p {r['length_ks_p']:.4f}); at the length limit {r['at_limit'][0]:.3f} vs {r['at_limit'][1]:.3f}")
    return r


if __name__ == "__main__":
    main()
