"""Demo-server throughput: concurrent users batched into shared ``generate`` calls vs one at a time.

Starts ``python -m argen.serve EXPORT`` on a free local port (its own process, the CLI's defaults
except ``--max-samples``), then, each round, sends the same ``--clients`` requests of ``--samples``
samples (distinct seeds) twice: one at a time, and all at once from ``--clients`` threads, each
with its own ``gradio_client`` connection, fetching its sample files. Throughput ratio = median sequential time / median
concurrent time over the rounds (the two alternate, so load from other jobs hits both). p95 is over
the concurrent requests' latencies. A request is lost when it errors or returns other than its
samples; every concurrent result is also checked byte for byte against the sequential one of the
same seed (batching must not change what a user gets). Stops the server at the end.

    python benchmarks/serve.py [EXPORT] [--clients 8] [--samples 4] [--rounds 5] [--json]

With ``--json`` the last line is ``{"throughput_ratio": …, "p95_s": …, "lost": …, …}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["a red circle", "a blue square", "a green triangle", "a yellow star", "a purple circle left of an orange "
           "square", "a small blue star above a large yellow circle", "a green square right of a red triangle",
           "a red star"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(export: str, port: int, max_samples: int, extra: list[str], timeout: float = 600) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "argen.serve", export, "--port", str(port), "--max-samples", str(max_samples),
           *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/config", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"the server did not answer within {timeout:.0f} s")


def request(user, model: str, samples: int, seed: int) -> tuple[float, str | None, str | None]:
    """One user's request, samples fetched: (seconds, digest of the samples, error)."""
    client, http = user
    start = time.perf_counter()
    try:
        _, _, files, _ = client.predict(model, PROMPTS[seed % len(PROMPTS)], samples, 2.0, 0.6, 0, 1.0, seed,
                                        api_name="/generate")
        if not files or len(files) != samples:
            return time.perf_counter() - start, None, f"{len(files or [])} files for {samples} samples"
        data = []
        for f in files:
            r = http.get(f["url"])
            r.raise_for_status()
            data.append(r.content)
        return time.perf_counter() - start, hashlib.sha256(b"".join(data)).hexdigest(), None
    except Exception as e:  # noqa: BLE001  (a failed request is counted as lost, not fatal)
        return time.perf_counter() - start, None, f"{type(e).__name__}: {e}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export", nargs="?", default="runs/parti-demo/export")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--server-args", default="", help='more argen.serve options, e.g. "--preview-s 0"')
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if not (Path(args.export) / "config.json").is_file():
        raise SystemExit(f"{args.export} is not an export: train the demo first (README) or name one")

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    t0 = time.perf_counter()
    server = start_server(args.export, port, args.samples, args.server_args.split())
    startup = time.perf_counter() - t0
    try:
        from gradio_client import Client

        # One client per user; each fetches its files over one kept-alive connection (gradio_client's own
        # downloader costs more CPU than the server's work here, and clients share the server's cores).
        clients = [(Client(url, verbose=False, download_files=False), httpx.Client(timeout=300))
                   for _ in range(args.clients)]
        api = clients[0][0].view_api(return_format="dict", print_info=False)
        model = api["named_endpoints"]["/generate"]["parameters"][0]["example_input"]  # the first export
        seeds = list(range(args.clients))
        # Warm-up, both ways: first-call allocations, and the decode buffers of the batched shape.
        request(clients[0], model, args.samples, 10_000)
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(lambda cs: request(cs[0], model, args.samples, 10_000 + cs[1]), zip(clients, seeds)))
        seq_times, conc_times, latencies, lost, mismatched = [], [], [], 0, 0
        for r in range(args.rounds):
            t = time.perf_counter()
            alone = [request(c, model, args.samples, s) for c, s in zip(clients, seeds)]
            seq_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                together = list(pool.map(lambda cs: request(cs[0], model, args.samples, cs[1]), zip(clients, seeds)))
            conc_times.append(time.perf_counter() - t)
            latencies += [sec for sec, _, _ in together]
            errors = [e for _, _, e in alone + together if e]
            lost += len(errors)
            mismatched += sum(a[1] != b[1] for a, b in zip(alone, together) if a[1] and b[1])
            print(f"round {r + 1}: one at a time {seq_times[-1]:.2f} s, {args.clients} at once {conc_times[-1]:.2f} s"
                  + (f", errors: {errors[:2]}" if errors else ""), flush=True)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()

    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))] if latencies else float("nan")
    result = {"throughput_ratio": round(statistics.median(seq_times) / statistics.median(conc_times), 3),
              "p95_s": round(p95, 3), "lost": lost, "mismatched": mismatched,
              "sequential_s": [round(x, 3) for x in seq_times], "concurrent_s": [round(x, 3) for x in conc_times],
              "clients": args.clients, "samples": args.samples, "rounds": args.rounds, "export": args.export,
              "server_args": args.server_args,
              "server_startup_s": round(startup, 1), "cpu": cpu_model(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(f"throughput x{result['throughput_ratio']}, p95 {result['p95_s']} s, lost {lost}, "
          f"batched != alone: {mismatched}")
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
