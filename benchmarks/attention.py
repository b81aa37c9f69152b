"""One decode step's attention on CPU: argen's one-query path against SDPA, and the memory floor.

A late decode step reads the whole KV cache, so its attention is bound by memory bandwidth. This
times, in one run, SDPA and argen's one-query path (``argen.nn._one_query_attention``) over the
sampling benchmark's cache shape (16 rows, 4 heads, head dim 64) at several prefix lengths, with 8
caches cycled so reads come from memory rather than cache, and a plain ``sum`` over 256 MB as the
read floor. Medians; GB/s = K + V bytes read per call / time.

    python benchmarks/attention.py [--threads 2] [--repeats 40]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from argen.nn import _one_query_attention


def median_s(fn, repeats: int) -> float:
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128, 512, 1000])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    B, H, T, D = 16, 4, max(args.lengths), 64
    caches = [(torch.randn(B, H, T, D), torch.randn(B, H, T, D)) for _ in range(8)]
    q = torch.randn(B, H, 1, D)

    flat = torch.randn(64 << 20)  # 256 MB
    floor = flat.numel() * 4 / median_s(lambda i: flat.sum(), 9) / 1e9
    print(f"read floor (sum over 256 MB, {args.threads} threads): {floor:.1f} GB/s")
    print("| keys | SDPA µs | one-query µs | SDPA GB/s | one-query GB/s | SDPA ÷ one-query |")
    print("|---|---|---|---|---|---|")
    rows = []
    with torch.no_grad():
        for L in args.lengths:
            k0, v0 = caches[0]
            torch.testing.assert_close(_one_query_attention(q, k0[:, :, :L], v0[:, :, :L]),
                                       F.scaled_dot_product_attention(q, k0[:, :, :L], v0[:, :, :L]))
            times = {}
            for _ in range(2):  # alternate, keep the second round
                for name, fn in (("sdpa", F.scaled_dot_product_attention),
                                 ("one", _one_query_attention)):
                    times[name] = median_s(lambda i, fn=fn, L=L: fn(q, caches[i % 8][0][:, :, :L],
                                                                          caches[i % 8][1][:, :, :L]), args.repeats)
            gb = 2 * B * H * L * D * 4 / 1e9
            print(f"| {L} | {times['sdpa'] * 1e6:.0f} | {times['one'] * 1e6:.0f} | {gb / times['sdpa']:.1f} | "
                  f"{gb / times['one']:.1f} | {times['sdpa'] / times['one']:.2f} |")
            rows.append({"keys": L, "sdpa_s": times["sdpa"], "one_query_s": times["one"], "floor_GBps": floor})
    return rows


if __name__ == "__main__":
    main()
