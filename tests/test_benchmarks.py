"""The speed benchmarks at toy sizes: they run, compare what they claim to compare, and report it.

Timings are not checked here (tests check correctness; BENCHMARKS.md records speed).
"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_attention_benchmark_checks_its_kernel_against_sdpa(threads):
    rows = load("attention").main(["--threads", "1", "--repeats", "1", "--lengths", "8", "40"])
    assert [r["keys"] for r in rows] == [8, 40]
    assert all(r["sdpa_s"] > 0 and r["one_query_s"] > 0 and r["floor_GBps"] > 0 for r in rows)


def test_sampling_benchmark_reports_every_ratio(threads, capsys):
    pytest.importorskip("transformers")
    result = load("sampling").main(["--json", "--threads", "1", "--repeats", "1", "--lengths", "4", "8"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("argen_vs_hf_4", "argen_vs_hf_8", "cached_vs_uncached_8"):
        assert last[key] == result[key] > 0
    assert 0.5 < result["uncached_estimate_vs_real_8"] < 2.0  # the estimator tracks a real uncached run
