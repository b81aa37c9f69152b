"""The speed benchmarks at toy sizes: they run, compare what they claim to compare, and report it.

Timings are not checked here (tests check correctness; BENCHMARKS.md records speed).
"""

import json
import math
from pathlib import Path

import pytest
from toys import load_benchmark as load
from toys import tiny_export, tiny_image_tokenizer

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: restores the thread count afterwards


def test_attention_benchmark_checks_its_kernel_against_sdpa():
    rows = load("attention").main(["--threads", "1", "--repeats", "1", "--lengths", "8", "40"])
    assert [r["keys"] for r in rows] == [8, 40]
    assert all(r["sdpa_s"] > 0 and r["one_query_s"] > 0 and r["floor_GBps"] > 0 for r in rows)


def test_sampling_benchmark_reports_every_ratio(capsys):
    pytest.importorskip("transformers")
    result = load("sampling").main(["--json", "--threads", "1", "--repeats", "1", "--lengths", "4", "8"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("argen_vs_hf_4", "argen_vs_hf_8", "cached_vs_uncached_8"):
        assert last[key] == result[key] > 0
    assert 0.5 < result["uncached_estimate_vs_real_8"] < 2.0  # the estimator tracks a real uncached run


def test_train_benchmark_runs_and_reports_ratio(capsys):
    """benchmarks/train.py at toy sizes: both models train on the same batch, the JSON line is complete."""
    bench = load("train")
    out = bench.main(["compare", "--batch", "2", "--text-len", "8", "--target-len", "16", "--vocab", "32",
                      "--repeats", "2", "--warmup", "0", "--json"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    dry = bench.main(["mfu", "--device", "cpu", "--preset", "demo", "--text-len", "8", "--batch", "1",
                      "--steps", "1", "--warmup", "1", "--variants", "eager", "--dtype", "float32",
                      "--peak-flops", "1e12"])
    assert last["ratio"] == out["ratio"] > 0 and last["gflop_per_step"] > 0
    for name in ("argen", "hf_bart"):
        assert abs(out["initial_loss"][name] - math.log(32)) < 1.0  # both are real models at init
    assert abs(out["params"]["argen"] - out["params"]["hf_bart"]) / out["params"]["hf_bart"] < 0.05  # same dims
    assert dry["results"][0]["tokens_per_s"] > 0 and 0 < dry["results"][0]["mfu"] < 1


@pytest.fixture(scope="module")
def toy_exports(tmp_path_factory):
    """Untrained tiny image and SVG generator exports, written by the export code training uses."""

    from argen.svg import SVGTokenizer
    from argen.text import TextTokenizer
    from argen.vqgan import ImageTarget

    root = tmp_path_factory.mktemp("speculative")
    tiny_image_tokenizer(root)
    text = TextTokenizer.train([f"a {c} {s} icon" for c in ("red", "blue", "green") for s in ("star", "home")] * 20,
                               60)

    def export(target, out):
        return tiny_export(target, text, out, sampling={"cfg_scale": 2.0, "top_p": 0.9})

    return export(ImageTarget(str(root / "tokenizer")), root / "image"), export(SVGTokenizer(grid=16, max_len=24),
                                                                              root / "svg")


def test_speculative_benchmark_reports_every_ratio(toy_exports, capsys):
    image, svg = toy_exports
    out = load("speculative").main(["--image", str(image), "--svg", str(svg), "--repeats", "1", "--window", "3",
                                    "--windows", "2", "--json"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last) == {"image", "svg"}
    for kind in ("image", "svg"):
        assert set(last[kind]) == {"passes_ratio_b1", "wall_ratio_b1", "passes_ratio_b16", "wall_ratio_b16"}
        assert last[kind] == out["ratios"][kind] and all(v > 0 for v in last[kind].values())
        for batch in (1, 16):
            runs = out["runs"][kind][batch]
            assert runs["0"]["accepted"] == 1.0 and runs["3"]["accepted"] >= 1.0
            assert runs["3"]["passes"] <= runs["0"]["passes"]  # a pass never commits fewer than one token
    assert "2" in out["runs"]["image"][1] and "2" not in out["runs"]["image"][16]  # the sweep runs at batch 1


def test_speculative_ratios_are_per_token(toy_exports):
    """Ratios divide passes (and seconds) per token of output, so samples that EOS ends at different
    lengths are compared for equal work; sequential decoding is one pass per token."""
    image, svg = toy_exports
    out = load("speculative").main(["--image", str(image), "--svg", str(svg), "--repeats", "2", "--window", "3",
                                    "--batches", "1", "--bookkeeping"])
    for kind in ("image", "svg"):
        seq, spec = out["runs"][kind][1]["0"], out["runs"][kind][1]["3"]
        assert seq["passes_per_token"] == 1.0 and 0 < spec["passes_per_token"] <= 1.0
        assert out["ratios"][kind]["passes_ratio_b1"] == round(seq["passes_per_token"] / spec["passes_per_token"], 3)
        assert out["ratios"][kind]["wall_ratio_b1"] == round(seq["s_per_token"] / spec["s_per_token"], 3)
        assert 0 < out["runs"][kind]["bookkeeping_ms_per_pass"]


def test_ngram_drafts_benchmark_runs_on_a_corpus(toy_exports, tmp_path, capsys):
    import io
    import tarfile

    _, svg = toy_exports
    shard = tmp_path / "train-000000.tar"
    icons = ['<svg viewBox="0 0 16 16"><path d="M2 2L14 2L14 14Z"/></svg>',
             '<svg viewBox="0 0 16 16"><path d="M2 2L14 2L2 14Z"/></svg>',
             '<svg viewBox="0 0 16 16"><path d="M4 4L12 4L12 12L4 12Z"/></svg>']
    with tarfile.open(shard, "w") as tar:
        for i, text in enumerate(icons):
            data = text.encode()
            info = tarfile.TarInfo(f"icon{i}.svg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = load("svg_ngram_drafts").main(["--export", str(svg), "--corpus", str(shard), "--prompts", "2",
                                         "--window", "3"])
    assert out["corpus_sequences"] == 3 and out["positions"] > 0
    assert 0 <= out["hit_rate"] <= 1 and 1 <= out["tokens_per_pass_bound"] <= 4
    assert 0 < out["mean_most_likely"] <= 1 and 1 < out["point_mass_bound"] <= 4
    assert "tokens per pass" in capsys.readouterr().out


def test_speculative_histograms_benchmark_compares_both_decoders(toy_exports, capsys):
    """benchmarks/speculative_histograms.py: both decoders sampled, each position tested, lengths compared."""
    _, svg = toy_exports
    r = load("speculative_histograms").main(["--export", str(svg), "--prompt", "home", "--samples", "24",
                                             "--positions", "6", "--threads", "1"])
    assert 1 <= r["positions_tested"] <= 6 and 0 < r["min_p"] <= 1 and 0 <= r["length_ks_p"] <= 1
    assert all(0 < m <= 24 for m in r["mean_length"]) and all(0 <= s <= 1 for s in r["at_limit"])
    assert "per-position chi-square" in capsys.readouterr().out
