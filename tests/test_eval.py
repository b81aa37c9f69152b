"""argen.eval: FID/KID against independent NumPy/SciPy maths, prompt suites, the four subcommands
end to end on tiny untrained exports written through the real export code, and clear errors."""

import itertools
import json
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import ImageFilter
from toys import tiny_export, tiny_image_tokenizer

from argen.data import shapes
from argen.data.icons import caption as icon_caption
from argen.data.icons import load_icons, split_of
from argen.eval import fid as F
from argen.eval.__main__ import main
from argen.eval.cache import Cache
from argen.eval.prompts import PromptRow, evaluate_prompts, read_prompts, write_prompts
from argen.eval.shapes import breakdown, evaluate_shapes, groups, sweep_subset
from argen.eval.svg import cached_masks, evaluate_svg, heldout_icons, training_icons
from argen.eval.tokenizer import evaluate_tokenizer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared CPU: one thread avoids waiting on busy OpenMP workers."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def renders(n, seed, split="val", size=32):
    rng = random.Random(seed)
    scenes = [shapes.sample_scene(rng, split) for _ in range(n)]
    return [shapes.render(s, size) for s in scenes], [shapes.caption(s) for s in scenes]


# -- FID / KID ------------------------------------------------------------------------------------
def fid_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of two Gaussians fitted to feature sets, with SciPy's matrix square root."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def kid_numpy(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the cubic polynomial kernel (x·y/d + 1)³."""
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    m = len(x)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())


@pytest.fixture(scope="module")
def image_sets():
    real, _ = renders(300, 1)
    other, _ = renders(300, 2)
    return real, [im.filter(ImageFilter.GaussianBlur(1.0)) for im in other]


def test_fid_matches_numpy_scipy_on_the_same_features(image_sets):
    real, fake = image_sets
    fid = F.FID("randconv")
    ours = fid.score(real, fake)  # torchmetrics on our extractor's features, end to end from images
    extractor = F.RandConvFeatures()
    a = extractor(F.to_uint8(real)).double().numpy()  # the same features, extracted independently
    b = extractor(F.to_uint8(fake)).double().numpy()
    ref = fid_numpy(a, b)
    assert ref > 0.05  # the two sets really differ, so the check is not 0 == 0
    assert abs(ours["fid"] - ref) / ref <= 1e-3
    assert ours["features"] == "randconv-v1" and ours["n_real"] == ours["n_fake"] == 300


def test_fid_and_kid_match_numpy_on_gaussians():
    """Known distributions, features handed in directly: N(0, I) vs N(mu, diag(s²)) in 16-d."""
    g = np.random.default_rng(0)
    a = g.standard_normal((500, 16))
    b = g.standard_normal((400, 16)) * np.linspace(0.5, 2.0, 16) + 0.3
    out = F.fid_kid(torch.from_numpy(a), torch.from_numpy(b), kid_subset_size=400)
    assert abs(out["fid"] - fid_numpy(a, b)) / fid_numpy(a, b) <= 1e-3
    analytic = 16 * 0.09 + sum(1 + s**2 - 2 * s for s in np.linspace(0.5, 2.0, 16))
    assert abs(out["fid"] - analytic) / analytic < 0.15  # sampling error only
    c = a[:400]  # equal sizes and subset = whole set: KID is exactly the unbiased MMD²
    kid = F.fid_kid(torch.from_numpy(c), torch.from_numpy(b), kid_subsets=3, kid_subset_size=400)
    assert kid["kid_mean"] == pytest.approx(kid_numpy(c, b), rel=1e-6)
    assert kid["kid_std"] == pytest.approx(0.0, abs=1e-9)


def test_randconv_is_fixed_and_ranks_degradations(image_sets):
    real, blurred = image_sets
    x = F.to_uint8(real[:8])
    assert torch.equal(F.RandConvFeatures()(x), F.RandConvFeatures()(x))  # same weights every time
    assert F.RandConvFeatures()(x).shape == (8, 256)
    fid = F.FID("randconv")
    f_real = fid.features(real)
    same = F.fid_kid(f_real, fid.features(renders(300, 3)[0]))["fid"]
    blur = F.fid_kid(f_real, fid.features(blurred))["fid"]
    gray = F.fid_kid(f_real, fid.features([im.convert("L").convert("RGB") for im in real]))["fid"]
    assert same < blur < gray


def test_feature_choice_and_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv(F.INCEPTION_ENV, str(tmp_path / "nothing.pth"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(F, "fid_helper_model", lambda: None)  # as without the eval extra
    assert F.feature_extractor("auto")[1] == "randconv-v1"
    with pytest.raises(F.FeaturesUnavailable, match="Inception features are not available.*weights"):
        F.feature_extractor("inception")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        F.feature_extractor("inception", tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="must be one of"):
        F.feature_extractor("clip")
    with pytest.raises(ValueError, match="uint8"):
        F.RandConvFeatures()(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="at least 2"):
        F.fid_kid(torch.zeros(1, 4), torch.zeros(5, 4))


# -- prompt suites --------------------------------------------------------------------------------
def test_read_prompts_partiprompts_layout(tmp_path):
    p = tmp_path / "parti.tsv"
    p.write_text("Prompt\tCategory\tChallenge\tNote\n"
                 "A red circle\tAbstract\tBasic\t\n"
                 "# a comment\n\n"
                 "a sign that says \"hi\"\tWorld Knowledge\tWriting & Symbols\tquotes kept\n"
                 "a tree\n")
    rows = read_prompts(p)
    assert [r.prompt for r in rows] == ["A red circle", 'a sign that says "hi"', "a tree"]
    assert [r.category for r in rows] == ["Abstract", "World Knowledge", "all"]
    assert rows[1].challenge == "Writing & Symbols" and rows[1].extra == {"note": "quotes kept"}
    assert rows[1].line == 5  # after a comment and a blank line
    back = read_prompts(write_prompts(tmp_path / "back.tsv", rows, comment="round trip"))
    assert [(r.prompt, r.category, r.challenge, r.extra) for r in back] == \
        [(r.prompt, r.category, r.challenge, r.extra) for r in rows]


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("# only a comment\n\n", "is empty"),
    ("caption\tcategory\nx\ty\n", ":1: the first line must be a tab-separated header with a 'prompt' column"),
    ("prompt\tcategory\n", "has a header but no prompts"),
    ("prompt\tcategory\na\tb\tc\n", ":2: 3 tab-separated fields but the header names 2"),
    ("prompt\tcategory\n\tb\n", ":2: empty prompt"),
    ("prompt\tprompt\na\tb\n", "repeated column names"),
])
def test_read_prompts_errors_name_file_and_line(tmp_path, text, message):
    p = tmp_path / "suite.tsv"
    p.write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        read_prompts(p)
    assert "suite.tsv" in str(e.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_prompts(tmp_path / "nope.tsv")


def test_shapes_heldout_suite():
    rows = read_prompts(REPO / "eval" / "shapes-heldout.tsv")
    assert len(rows) == 40
    for r in rows:
        scene = shapes.parse_caption(r.prompt)
        held = any((o.color, o.shape) in shapes.HELD_OUT_PAIRS for o in scene.objects)
        assert held != r.category.startswith("control"), r
        assert [o.size for o in scene.objects].count("large") < 2  # never two large objects
    cats = {r.category for r in rows}
    assert cats == {"held-out single", "held-out pair + relation", "two held-out pairs", "control: seen pairs"}
    assert {shapes.parse_caption(r.prompt).relation for r in rows} >= set(shapes.RELATIONS)


def test_icons_heldout_suite_is_the_val_split():
    rows = read_prompts(REPO / "eval" / "icons-heldout.tsv")
    val = [s for s, _ in load_icons() if split_of(s) == "val"]
    assert [r.extra["slug"] for r in rows] == val
    assert all(r.prompt == icon_caption(r.extra["slug"]) for r in rows)
    default = heldout_icons(32)
    assert len(default) == 32 and {r.extra["slug"] for r in default} <= set(val)


# -- shapes aggregation on real renders -----------------------------------------------------------
def test_breakdown_counts_and_reranking():
    imgs, caps = renders(6, 5)
    wrong, _ = renders(6, 6)
    # prompt i: its own render ranked first, an unrelated render second
    scores = [[shapes.score(imgs[i], caps[i]), shapes.score(wrong[i], caps[i])] for i in range(6)]
    rows = {r["name"]: r for r in breakdown(caps, scores)}
    everything = rows["all prompts"]
    assert everything["prompts"] == 6 and everything["samples"] == 12
    assert everything["full_reranked"] == 1.0
    assert everything["full"] == pytest.approx(np.mean([s["full"] for per in scores for s in per]))
    assert everything["full"] < 1.0
    suite = shapes.prompt_suite()
    sizes = {name: len(idx) for _, name, idx in groups(suite)}
    assert sizes["single object"] == 24 and sizes["two objects"] == 40
    assert all(sizes[r] == 10 for r in shapes.RELATIONS)
    sub = sweep_subset(suite, 16)
    assert len(sub) == 16
    assert {shapes.parse_caption(suite[i]).relation for i in sub} == {None, *shapes.RELATIONS}


# -- end to end on tiny exports -------------------------------------------------------------------
@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A tiny image tokenizer, an image generator on it and an SVG generator, all untrained, written
    by ImageTokenizer.save_pretrained and Seq2SeqModule.export (the code paths training uses)."""
    from argen.svg import SVGTokenizer
    from argen.text import TextTokenizer
    from argen.vqgan import ImageTarget

    root = tmp_path_factory.mktemp("exports")
    tiny_image_tokenizer(root)
    _, caps = renders(200, 0, "train")
    text = TextTokenizer.train(caps + [icon_caption(s) for s, _ in load_icons()[:200]], 200)

    def export(target, out):
        return tiny_export(target, text, out)

    return {"tokenizer": root / "tokenizer", "image": export(ImageTarget(str(root / "tokenizer")), root / "image"),
            "svg": export(SVGTokenizer(grid=32, max_len=40), root / "svg")}


def read_report(out: Path) -> tuple[dict, str]:
    metrics = json.loads((out / "metrics.json").read_text())
    report = (out / "report.md").read_text()
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (out / link).is_file(), f"report.md embeds a missing image {link}"
    return metrics, report


def test_shapes_end_to_end_with_wandb(exports, tmp_path):
    out = tmp_path / "shapes"
    evaluate_shapes(exports["image"], out, num_samples=2, cfg_scales=(1.0, 3.0), sweep_prompts=4, fid_real=64,
                    features="randconv", wandb=True, progress=False)
    metrics, report = read_report(out)
    m = metrics["metrics"]
    assert set(m["accuracy"]) >= {"color_shape", "full", "full_reranked", "held_out_full"}
    assert 0.0 <= m["accuracy"]["full"] <= 1.0
    assert m["breakdown"]["all prompts"]["samples"] == 128
    assert m["fid"]["features"] == "randconv-v1" and m["fid"]["n_fake"] == 128 and m["fid"]["n_real"] == 64
    assert m["fid"]["fid"] > m["reference"]["fid_real_vs_real"] >= 0  # noise images vs real renders
    assert m["reference"]["scorer_full_on_real"] >= 0.95
    assert set(m["cfg_sweep"]) == {"1.0", "3.0"}
    assert "## Summary" in report and "randconv-v1" in report and "held-out" in report
    assert len(list(out.glob("*.png"))) >= 3
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert list(runs[0].rglob("*.png")), "grids were not logged to the W&B run"
    assert list(runs[0].rglob("accuracy*.table.json")), "tables were not logged to the W&B run"
    assert json.loads((runs[0] / "files" / "metrics.json").read_text()) == metrics


def test_svg_end_to_end(exports, tmp_path):
    out = tmp_path / "svg"
    evaluate_svg(exports["svg"], out, num_prompts=4, num_samples=2, train_limit=60, features="randconv",
                 progress=False)
    metrics, report = read_report(out)
    m = metrics["metrics"]
    for key in ("validity", "uniqueness", "novelty", "iou_to_reference_best"):
        assert m[key] is None or 0.0 <= m[key] <= 1.0
    assert m["samples"] == 8 and m["prompts_with_reference"] == 4
    assert 0 < m["training_icons"] <= 60
    assert m["fid"]["n_real"] == len([s for s, _ in load_icons() if split_of(s) == "val"])
    assert "Uniqueness" in report and "Novelty" in report and (out / "contact-sheet.png").is_file()
    assert len(list((out / "svg").glob("*.svg"))) == 8
    cached = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "argen-cache").glob("*.safetensors"))
    assert cached == ["svg-heldout", "svg-masks", "svg-train"]


def test_training_icons_are_those_the_model_saw():
    """Novelty compares with icons as training read them: decoded through the tokenizer, and none that
    the tokenizer refuses or that run past max_len (training skips those)."""
    from argen.svg import SVGTokenizer

    short, long = SVGTokenizer(grid=32, max_len=40), SVGTokenizer(grid=32, max_len=4096)
    seen, every = training_icons(short, limit=60, progress=False), training_icons(long, limit=60, progress=False)
    assert 0 < len(seen) < len(every) <= 60
    assert all(len(short.encode(svg)) <= 40 for svg in seen)
    assert set(seen) <= set(every)


def test_cached_masks_round_trip(tmp_path):
    cache = Cache(tmp_path / "c")
    svgs = [svg for _, svg in load_icons()[:5]] + ["<svg xmlns='http://www.w3.org/2000/svg'><path d='M 0 0 L"]
    masks, valid = cached_masks(svgs, progress=False, cache=cache)
    assert masks.shape == (6, 64 * 64) and valid.tolist() == [True] * 5 + [False]  # the broken SVG is invalid
    assert masks[:5].any(axis=1).all() and not masks[5].any()
    (entry,) = (tmp_path / "c").glob("svg-masks-*.safetensors")
    again, valid2 = cached_masks(svgs, progress=False, cache=cache)  # read back from the cache
    assert np.array_equal(again, masks) and np.array_equal(valid2, valid)
    entry.unlink()
    assert cached_masks(svgs[:3], progress=False, cache=cache)[0].shape[0] == 3  # another key: rendered afresh
    assert len(list((tmp_path / "c").glob("*.safetensors"))) == 1


def test_feature_cache_is_keyed_by_pixels_and_extractor(tmp_path):
    """A cached feature set is read back only for the same pixels through the same extractor."""
    fid = F.FID("randconv")
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    cache = Cache(tmp_path / "c")
    first = cache.features(fid, images, "real")
    torch.testing.assert_close(first, fid.features(images))
    (entry,) = (tmp_path / "c").glob("real-*.safetensors")
    stamp = entry.stat().st_mtime_ns
    torch.testing.assert_close(cache.features(fid, images.clone(), "real"), first)
    assert entry.stat().st_mtime_ns == stamp  # read, not written again
    changed = images.clone()
    changed[0, 0, 0, 0] ^= 1  # one pixel differs: a new entry, never the stale one
    assert not torch.equal(cache.features(fid, changed, "real"), first)
    fid.name = "another-extractor"  # the same pixels through another extractor: a new entry as well
    cache.features(fid, images, "real")
    assert len(list((tmp_path / "c").glob("real-*.safetensors"))) == 3
    fid.name = F.RandConvFeatures.name
    torch.testing.assert_close(Cache(False).features(fid, images, "real"), first)  # computed, kept nowhere
    assert not (tmp_path / "argen-cache").exists()  # not even in the default folder ($ARGEN_CACHE here)


def test_tokenizer_end_to_end_matches_direct_evaluation(exports, tmp_path):
    from argen.data.shards import SampleDecoder, ShardStream, expand_shards
    from argen.vqgan import ImageTokenizer, evaluate

    shapes.prepare(tmp_path / "shards", train=1, val=40, size=32, per_shard=16, progress=False)
    spec = str(tmp_path / "shards" / "val-*.tar")
    out = tmp_path / "tok"
    m = evaluate_tokenizer(exports["tokenizer"], [spec], out, max_images=32, batch_size=16, features="randconv",
                           progress=False)
    metrics, report = read_report(out)
    assert metrics["metrics"]["images"] == 32
    images = [torch.from_numpy(np.array(s["image"])).permute(2, 0, 1).float() / 255
              for s in ShardStream(expand_shards(spec), SampleDecoder(32))][:32]
    direct = evaluate(ImageTokenizer.from_pretrained(exports["tokenizer"]), torch.stack(images))
    assert m["psnr"] == pytest.approx(direct["psnr"], rel=1e-5)
    assert m["ssim"] == pytest.approx(direct["ssim"], rel=1e-5)
    assert m["codebook_usage"] == pytest.approx(direct["usage"])
    assert 1 <= m["codebook_perplexity"] <= 64 and m["rfid"] > 0 and m["lpips"] is None
    assert 0 < m["rfid_floor"] < m["rfid_half"]  # an untrained tokenizer is worse than the real-vs-real floor
    assert "shapes_full_on_reconstructions" in m
    assert "LPIPS" in report and "not measured" in report and (out / "reconstructions.png").is_file()
    cache = tmp_path / "argen-cache"  # the originals' features, one entry per batch; a rerun reads them back
    assert len(list(cache.glob("tokenizer-originals-*.safetensors"))) == 2
    again = evaluate_tokenizer(exports["tokenizer"], [spec], tmp_path / "again", max_images=32, batch_size=16,
                               features="randconv", progress=False)
    assert (again["rfid"], again["rfid_floor"]) == (m["rfid"], m["rfid_floor"])
    assert main(["tokenizer", str(exports["tokenizer"]), "--shards", spec, "--max-images", "8", "--batch-size", "8",
                 "--fid-features", "randconv", "--no-cache", "--no-progress", "--out", str(tmp_path / "nc")]) == 0
    assert len(list(cache.glob("*.safetensors"))) == 2  # --no-cache kept nothing


def test_prompts_end_to_end(exports, tmp_path):
    suite = write_prompts(tmp_path / "suite.tsv", [
        PromptRow("a red star", "held-out", "binding"), PromptRow("a blue circle", "seen", "basic"),
        PromptRow("a green square above a red circle", "seen", "relation")])
    out = tmp_path / "img"
    m = evaluate_prompts(exports["image"], suite, out, num_samples=2, progress=False)
    _, report = read_report(out)
    assert m["categories"]["seen"]["prompts"] == 2 and "color_shape" in m["categories"]["held-out"]
    assert (out / "category-held-out.png").is_file() and (out / "category-seen.png").is_file()
    assert "## Category: seen" in report
    out = tmp_path / "svg"
    m = evaluate_prompts(exports["svg"], suite, out, num_samples=1, progress=False)
    assert 0.0 <= m["categories"]["seen"]["validity"] <= 1.0
    assert len(list((out / "svg").glob("*.svg"))) == 3


# -- command line ---------------------------------------------------------------------------------
def test_cli_writes_report(exports, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["prompts", str(exports["image"]), "--prompts", str(REPO / "eval" / "shapes-heldout.tsv"),
                 "--out", str(out), "--num-samples", "1", "--no-progress", "--threads", "1"]) == 0
    assert "report.md" in capsys.readouterr().out
    metrics, _ = read_report(out)
    assert set(metrics["metrics"]["categories"]) == {"held-out single", "held-out pair + relation",
                                                     "two held-out pairs", "control: seen pairs"}


def test_cli_bad_input_is_a_clear_error(exports, tmp_path, capsys):
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    out = str(tmp_path / "o")
    cases = [
        (["shapes", str(tmp_path / "missing"), "--out", out], "config.json is missing"),
        (["shapes", str(exports["svg"]), "--out", out], "writes 'svg_tokenizer' tokens (use `python -m argen.eval svg"),
        (["svg", str(exports["image"]), "--out", out], "writes 'image_tokenizer' tokens"),
        (["shapes", str(exports["tokenizer"]), "--out", out], "use `python -m argen.eval tokenizer`"),
        (["tokenizer", str(exports["image"]), "--shards", str(tmp_path / "x.tar"), "--out", out],
         "needs an image tokenizer export"),
        (["tokenizer", str(exports["tokenizer"]), "--shards", str(tmp_path / "x.tar"), "--out", out],
         "does not exist"),
        (["prompts", str(exports["image"]), "--prompts", str(empty), "--out", out], "is empty"),
        (["shapes", str(exports["image"]), "--out", out, "--fid-features", "inception",
          "--inception-weights", str(tmp_path / "w.pth")], "w.pth do not exist"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "error:" in err and message in err, (argv, err)
    assert not (tmp_path / "o" / "report.md").exists()
    # --seed would change nothing in a (deterministic) tokenizer evaluation: refused, no longer ignored
    with pytest.raises(SystemExit):
        main(["tokenizer", str(exports["tokenizer"]), "--shards", str(tmp_path / "x.tar"), "--out", out, "--seed", "3"])
    assert "unrecognized arguments: --seed 3" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("command, export", [("shapes", "runs/parti-demo/export"),
                                             ("svg", "runs/iconshop-demo/export")])
def test_demo_export_evaluates_within_five_minutes(command, export, tmp_path, monkeypatch):
    """Issue 7's done-when: the default evaluation of each trained demo export in ≤ 5 minutes."""
    import time

    path = REPO / export
    if not (path / "config.json").is_file():
        pytest.skip(f"{export} is missing: train the demo first (see README)")
    monkeypatch.setenv("ARGEN_CACHE", str(tmp_path / "cache"))  # cold cache: the worst case
    start = time.perf_counter()
    assert main([command, str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert time.perf_counter() - start <= 300
    metrics, report = read_report(tmp_path / "out")
    assert metrics["metrics"]["fid"]["fid"] is not None and list((tmp_path / "out").glob("*.png"))
    if command == "shapes":
        assert {"full", "full_reranked", "held_out_full"} <= set(metrics["metrics"]["accuracy"])
    else:
        assert metrics["metrics"]["validity"] is not None


# -- python -m argen.sample (on the same tiny exports) ----------------------------------------------
def test_sample_cli_image_grid_in_float32_and_bfloat16(exports, tmp_path):
    from PIL import Image

    from argen.sample import main as sample_main

    for dtype in ("float32", "bfloat16"):
        out = tmp_path / f"grid-{dtype}.png"
        assert sample_main([str(exports["image"]), "--prompt", "a red circle", "--prompt", "a blue square",
                            "--num-samples", "3", "--cell", "48", "--dtype", dtype, "--out", str(out)]) == 0
        with Image.open(out) as grid:
            assert grid.width == 6 * 48 and grid.height > 48  # one row of 6 captioned cells


def test_sample_cli_svg_files_and_contact_sheet(exports, tmp_path):
    from argen.sample import main as sample_main
    from argen.svg.metrics import validity

    out = tmp_path / "icons.png"  # an SVG model writes a folder: the suffix is dropped
    assert sample_main([str(exports["svg"]), "--prompt", "home", "--num-samples", "2", "--seed", "5",
                        "--out", str(out)]) == 0
    files = sorted((tmp_path / "icons").glob("*.svg"))
    assert [f.name[:4] for f in files] == ["0000", "0001"]
    assert validity([f.read_text() for f in files]) == 1.0  # each parses strictly and renders
    assert (tmp_path / "icons" / "contact_sheet.png").stat().st_size > 0


def test_sample_cli_speculative_reports_its_passes(exports, tmp_path, capsys):
    from argen.sample import main as sample_main

    assert sample_main([str(exports["svg"]), "--prompt", "home", "--num-samples", "2", "--seed", "5",
                        "--speculative", "--out", str(tmp_path / "icons")]) == 0
    line = next(t for t in capsys.readouterr().out.splitlines() if t.startswith("speculative decoding:"))
    tokens, passes = (int(w) for w in line.split()[2:6:3])  # "... N tokens in P decoder passes ..."
    assert 0 < passes <= tokens and "tokens per pass per row" in line


def test_sample_cli_bad_input_is_a_clear_error(exports, tmp_path):
    from argen.sample import main as sample_main

    with pytest.raises(SystemExit, match="at least one --prompt"):
        sample_main([str(exports["image"])])
    with pytest.raises(SystemExit, match="not an argen export"):
        sample_main([str(tmp_path / "missing"), "--prompt", "x"])
    with pytest.raises(SystemExit, match="num_samples"):
        sample_main([str(exports["image"]), "--prompt", "x", "--num-samples", "0"])


def test_a_stored_top_k_can_be_switched_off_from_the_api_the_cli_and_yaml(exports, tmp_path):
    """Regression: ``generate(top_k=None)`` used to mean "the export's top-k", so a stored top-k could
    not be turned off; ``--top-k`` took only ints."""
    import shutil

    import yaml

    from argen.generator import Generator
    from argen.sample import main as sample_main
    from argen.sampling_config import SamplingConfig
    from argen.transformer.lit import Seq2SeqModule

    stored = tmp_path / "top1"  # the SVG export, with top_k 1 stored as its default
    shutil.copytree(exports["svg"], stored)
    config = json.loads((stored / "config.json").read_text())
    config["sampling"]["top_k"] = 1
    (stored / "config.json").write_text(json.dumps(config))
    top1, plain = Generator.from_pretrained(stored), Generator.from_pretrained(exports["svg"])
    assert top1.sampling.top_k == 1 and plain.sampling.top_k is None
    prompts, kw = ["home", "heart"], dict(num_samples=3, seed=1)
    kept = top1.generate(prompts, **kw)
    off = top1.generate(prompts, top_k=None, **kw)
    assert off == plain.generate(prompts, **kw) and off != kept  # off from the API
    assert plain.generate(prompts, top_k=1, **kw) == kept  # and on, where the export has it off

    def cli(export, out, *extra):
        assert sample_main([str(export), "--prompt", "home", "--prompt", "heart", "--num-samples", "3", "--seed",
                            "1", "--out", str(out), *extra]) == 0
        return [f.read_text() for f in sorted(out.glob("*.svg"))]

    assert cli(stored, tmp_path / "cli-off", "--top-k", "off") == cli(exports["svg"], tmp_path / "cli-plain")
    # --batch-size splits prompts x samples across prompts now (it used to batch within one prompt only);
    # rows are seeded one by one, so the split changes nothing in the output
    assert cli(stored, tmp_path / "cli-off-b4", "--top-k", "off", "--batch-size", "4") == cli(exports["svg"],
                                                                                             tmp_path / "cli-plain")
    assert cli(stored, tmp_path / "cli-kept") == [svg for row in kept for svg in row]

    for text in ("sampling: {top_k: off, top_p: null}", "sampling: {top_k: null}", "sampling: {top_p: off}"):
        module = Seq2SeqModule(target=plain.target, preset="demo", **yaml.safe_load(text))
        assert module.sampling == SamplingConfig(cfg_scale=3.0, top_k=None, top_p=None), text
    with pytest.raises(ValueError, match="top_k"):
        Seq2SeqModule(target=plain.target, preset="demo", sampling={"top_k": -2})
    with pytest.raises(ValueError, match="unknown sampling setting"):
        Seq2SeqModule(target=plain.target, preset="demo", sampling={"topk": 3})
    with pytest.raises(ValueError, match="cfg_scale must be a number"):
        plain.generate(prompts, cfg_scale=None)  # ambiguous (no guidance? the export's?): refused


# -- recognisability on a prepared icon corpus ------------------------------------------------------
def test_recognisability_scores_nearest_concepts():
    from argen.eval.svg import recognisability

    train = np.eye(4, 16, dtype=bool).repeat(1, axis=0)
    train[:, 8:] = np.eye(4, 8, dtype=bool)  # four distinct masks
    concepts = [{"heart"}, {"home"}, {"star"}, {"bell"}]
    names = ["heart", "home", "star", "bell"]
    r = recognisability(train.copy(), np.ones(4, bool), names, train, concepts, shuffles=50)
    assert r["score"] == 1.0 and r["floor"] < 0.6  # shuffling the prompts breaks most matches
    r = recognisability(train.copy(), np.array([True, False, True, True]), names, train, concepts)
    assert r["score"] == 0.75  # an invalid sample is a miss


def _tiny_corpus(folder):
    from argen.data.shards import write_shards

    icons = {"heart": "M12 21l-8-8a5 5 0 0 1 8-6a5 5 0 0 1 8 6z", "home": "M3 11l9-8 9 8v10h-6v-6h-6v6H3z",
             "star": "M12 2l3 7h7l-6 4 2 7-6-4-6 4 2-7-6-4h7z",
             "sun": sun_outline()}  # longer than the export's max_len: never trained on, still a reference

    def sample(key, concept, set_, d):
        svg = f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path d="{d}"/></svg>'
        return {"__key__": key, "svg": svg.encode(), "txt": concept,
                "json": {"set": set_, "name": concept, "style": "", "licence": "MIT", "tags": [],
                         "concept": concept, "concepts": [concept]}}
    train = [sample(f"a-{c}", c, "a", d) for c, d in icons.items()]
    train += [sample(f"b-{c}", c, "b", d.replace("M", "M1 1L", 1)) for c, d in icons.items()]
    write_shards(iter(train), folder, "train", 4, progress=False)
    write_shards(iter([sample(f"c-{c}", c, "c", icons[c]) for c in ("heart", "star", "sun")]), folder, "val", 4,
                 progress=False)
    (folder / "eval").mkdir()
    (folder / "eval" / "heldout.tsv").write_text("prompt\tcategory\tchallenge\tconcept\tkey\n" + "".join(
        f"{c}\tc\theld-out (concept, set)\t{c}\tc-{c}\n" for c in ("heart", "star", "sun")))


def sun_outline(rays: int = 24) -> str:
    """A 48-vertex zigzag ring: far more path tokens than a 40-token export can write."""
    points = [(12 + r * math.cos(math.pi * k / rays), 12 + r * math.sin(math.pi * k / rays))
              for k, r in zip(range(2 * rays), itertools.cycle((11, 7)))]
    return "M" + "L".join(f"{x:.2f} {y:.2f}" for x, y in points) + "z"


def test_svg_on_a_corpus_reports_recognisability(exports, tmp_path):
    _tiny_corpus(tmp_path / "corpus")
    out = tmp_path / "svg"
    evaluate_svg(exports["svg"], out, corpus=tmp_path / "corpus", num_samples=2, features="randconv",
                 progress=False)
    metrics, report = read_report(out)
    r = metrics["metrics"]["recognisability"]
    # the whole training set and every held-out icon count, also the suns too long for the model
    assert r["n_samples"] == 6 and r["n_real"] == 3 and r["training_icons"] == 8
    assert r["ceiling_real_heldout"] == 1.0  # each real held-out icon is nearest to a training one of its concept
    assert 0.0 <= r["samples"] <= 1.0 and 0.0 <= r["floor_shuffled_prompts"] <= 1.0
    assert "Recognisability" in report and (out / "contact-sheet.png").is_file()


def test_svg_recognisability_without_real_icons_for_the_prompts(exports, tmp_path):
    """Prompts of training concepts (no held-out key) score recognisability with no ceiling."""
    _tiny_corpus(tmp_path / "corpus")
    prompts = tmp_path / "train-prompts.tsv"
    prompts.write_text("prompt\tconcept\nheart\theart\nstar\tstar\n")
    out = tmp_path / "svg"
    evaluate_svg(exports["svg"], out, corpus=tmp_path / "corpus", prompts=prompts, num_samples=2,
                 features="randconv", progress=False)
    metrics, report = read_report(out)
    r = metrics["metrics"]["recognisability"]
    assert r["n_samples"] == 4 and r["n_real"] == 0 and r["ceiling_real_heldout"] is None
    assert "n/a: no prompt names a held-out icon" in report
