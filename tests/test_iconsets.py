"""The eight icon-set readers and ``prepare icons``, on small fixtures written in each package's
layout (no network), plus the per-set round trip on the installed packages."""

import json
import sqlite3
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from argen.data import iconcorpus, iconsets
from argen.data.iconsets import SETS, concept_of, read_set
from argen.generator import Generator

NS = 'xmlns="http://www.w3.org/2000/svg"'
HEART = "M12 21l-8-8a5 5 0 0 1 8-6a5 5 0 0 1 8 6z"
HOME = "M3 11l9-8 9 8v10h-6v-6h-6v6H3z"
STAR = "M12 2l3 7h7l-6 4 2 7-6-4-6 4 2-7-6-4h7z"
BELL = "M6 17V11a6 6 0 0 1 12 0v6l2 2H4zM10 20h4v2h-4z"


def filled(d, vb=24):
    return f'<svg {NS} viewBox="0 0 {vb} {vb}" fill="currentColor"><path d="{d}"/></svg>'


def stroked(d, w=2):
    return (f'<svg {NS} width="24" height="24" viewBox="0 0 24 24" fill="none" stroke="currentColor" '
            f'stroke-width="{w}" stroke-linecap="round" stroke-linejoin="round"><path d="{d}"/></svg>')


def _zip(path, files):
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """One tiny package folder per set, in the layout its wheel installs."""
    base = tmp_path_factory.mktemp("sets")
    r = {k: base / k for k in SETS}
    for p in r.values():
        p.mkdir()
    # mdi: a module whose attributes are Icon records
    pkg = base / "fake_mdi_pack"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "class Icon:\n    def __init__(self, slug, svg):\n        self.slug, self.svg = slug, svg\n"
        + "".join(f"{n.replace('-', '_')} = Icon({n!r}, {svg!r})\n" for n, svg in [
            ("heart", filled(HEART)), ("heart-outline", stroked(HEART, 1.5)), ("home", filled(HOME)),
            ("star", filled(STAR)), ("bell", filled(BELL))]))
    r["mdi"] = pkg
    sys.path.insert(0, str(base))
    _zip(r["tabler"] / "tablericons.zip", {"outline/heart.svg": stroked(HEART), "outline/home.svg": stroked(HOME),
                                          "filled/heart.svg": filled(HEART), "outline/star.svg": stroked(STAR)})
    rem = r["remix"] / "static" / "remixicon"
    rem.mkdir(parents=True)
    (rem / "remixicon.glyph.json").write_text(json.dumps({
        "heart-fill": {"path": [HEART]}, "home-line": {"path": [HOME, "M10 10h4v4h-4z"]},
        "star-fill": {"path": [STAR]}, "bell-fill": {"path": [BELL]}}))
    fa = r["fontawesome"] / "static" / "fontawesomefree"
    (fa / "svgs" / "solid").mkdir(parents=True)
    (fa / "svgs" / "regular").mkdir()
    (fa / "metadata").mkdir()
    (fa / "svgs" / "solid" / "house.svg").write_text(filled("M6 30L32 6L58 30V58H6z", 64))
    (fa / "svgs" / "solid" / "heart.svg").write_text(filled("M3 3h18v18H3z"))
    (fa / "svgs" / "regular" / "star.svg").write_text(filled("M4 4h16v2H4z"))
    (fa / "metadata" / "icons.json").write_text(json.dumps({
        "house": {"label": "House", "search": {"terms": ["abode", "building"]}, "aliases": {"names": ["home"]}},
        "heart": {"label": "Heart", "search": {"terms": ["love", "like"]}}}))
    bs = r["bootstrap"] / "static" / "bootstrap-icons"
    bs.mkdir(parents=True)
    (bs / "heart-fill.svg").write_text(filled(HEART))  # the same drawing as tabler filled/heart: merged
    (bs / "bell.svg").write_text(filled(BELL))
    (bs / "bootstrap-icons.svg").write_text(f'<svg {NS}><symbol id="x" viewBox="0 0 16 16"/></svg>')  # the sprite
    (bs / "text.svg").write_text(f'<svg {NS} viewBox="0 0 16 16"><text>A</text></svg>')  # refused
    (r["lucide"] / "data").mkdir()
    db = sqlite3.connect(r["lucide"] / "data" / "lucide-icons.db")
    db.executescript("CREATE TABLE icons (name TEXT PRIMARY KEY, svg TEXT NOT NULL);"
                     "CREATE TABLE icon_tags (name TEXT NOT NULL, tag TEXT NOT NULL);"
                     "CREATE TABLE icon_categories (name TEXT NOT NULL, category TEXT NOT NULL);")
    db.executemany("INSERT INTO icons VALUES (?, ?)", [("heart", stroked(HEART, 2.5)), ("bell", stroked(BELL))])
    db.executemany("INSERT INTO icon_tags VALUES (?, ?)", [("heart", "love"), ("heart", "like")])
    db.executemany("INSERT INTO icon_categories VALUES (?, ?)", [("heart", "emoji")])
    db.commit()
    db.close()
    (r["ionicons"] / "icons").mkdir()
    (r["ionicons"] / "icons" / "star-outline.svg").write_text(
        f'<svg {NS} viewBox="0 0 512 512"><path d="M256 40L320 200H480L350 300L400 460L256 360L112 460L162 '
        f'300L32 200H192Z" fill="none" stroke="#000" stroke-linejoin="round" stroke-width="32"/></svg>')
    (r["ionicons"] / "icons" / "star.svg").write_text(filled(STAR))  # identical to mdi star: merged
    _zip(r["heroicons"] / "heroicons.zip", {"outline/bell.svg": stroked(BELL, 1.5), "solid/home.svg": filled(HOME),
                                           "mini/home.svg": filled("M4 10l6-6 6 6v6H4z", 20)})
    yield r
    sys.path.remove(str(base))


def test_concepts_drop_style_suffixes():
    assert concept_of("heart-outline") == concept_of("heart-fill") == concept_of("heart") == "heart"
    assert concept_of("arrow-left-line") == "arrow left"
    assert concept_of("outline") == "outline"  # a name that is only a style word keeps it
    assert concept_of("home", "solid") == "home"


def test_readers_read_every_layout(roots):
    got = {k: list(read_set(k, roots[k])) for k in SETS}
    assert [i.name for i in got["mdi"]] == ["bell", "heart", "heart-outline", "home", "star"]
    assert {(i.name, i.style) for i in got["tabler"]} == {("heart", "outline"), ("home", "outline"),
                                                          ("heart", "filled"), ("star", "outline")}
    assert {i.style for i in got["remix"]} == {"fill", "line"}
    assert "bootstrap-icons" not in {i.name for i in got["bootstrap"]}  # the sprite is not an icon
    house = next(i for i in got["fontawesome"] if i.name == "house")
    assert house.tags == ["abode", "building", "home"] and house.label == "House" and house.licence == "CC BY 4.0"
    assert next(i for i in got["lucide"] if i.name == "heart").tags == ["love", "like", "emoji"]
    assert {(i.name, i.style) for i in got["ionicons"]} == {("star-outline", "outline"), ("star", "filled")}
    assert {i.style for i in got["heroicons"]} == {"outline", "solid", "mini"}
    assert all(i.svg.startswith("<svg") for icons in got.values() for i in icons)


def test_missing_package_is_an_error_naming_it(monkeypatch):
    monkeypatch.setitem(SETS, "lucide", iconsets.IconSet("lucide", "python-lucide", "no_such_module_xyz", "ISC",
                                                         iconsets.read_lucide, True))
    with pytest.raises(ValueError, match="python-lucide"):
        list(read_set("lucide"))
    with pytest.raises(ValueError, match="unknown icon sets"):
        iconcorpus.parse_sources("mdi,nosuch")


def test_caption_format():
    icon = iconsets.Icon("fontawesome", "house", "solid", "", "CC BY 4.0", ["abode", "building", "home"])
    assert iconcorpus.caption(icon) == "house solid; abode, building, home"
    assert iconcorpus.caption(iconsets.Icon("mdi", "heart-outline", "outline", "", "")) == "heart outline"
    assert iconcorpus.caption(iconsets.Icon("lucide", "heart", "", "", "", ["love"]), ["heart fill"]) == \
        "heart; heart fill, love"


def _read_tars(folder, split):
    out = {}
    for tar in sorted(folder.glob(f"{split}-*.tar")):
        with tarfile.open(tar) as t:
            for m in t.getmembers():
                key, ext = m.name.split(".", 1)
                out.setdefault(key, {})[ext] = t.extractfile(m).read().decode()
    return out


def test_prepare_corpus_dedups_splits_and_counts(roots, tmp_path):
    stats = iconcorpus.prepare(tmp_path / "all", roots=roots, sources=list(SETS), workers=1, progress=False)
    s = stats["sets"]
    for k, v in s.items():  # the counts add up
        assert v["read"] == v["encoded"] + sum(v["refused"].values()), k
        assert v["encoded"] == v["samples"] + v["duplicates"] and v["samples"] == v["train"] + v["val"], k
    assert s["bootstrap"]["refused"] == {"unsupported": 1}
    assert s["bootstrap"]["duplicates"] == 2 and s["ionicons"]["duplicates"] == 1  # identical drawings merged
    assert s["tabler"]["encoded"] == 4 and s["lucide"]["encoded"] == 2  # strokes are outlined, not refused
    rows = {**_read_tars(tmp_path / "all", "train"), **_read_tars(tmp_path / "all", "val")}
    assert len(rows) == stats["totals"]["samples"]
    merged = json.loads(rows["mdi-filled-heart"]["json"])  # the same heart in four sets: one sample
    assert [x["set"] for x in merged["sources"]] == ["mdi", "tabler", "remix", "bootstrap"]
    assert merged["caption"] == "heart filled; heart fill"
    for r in rows.values():
        meta = json.loads(r["json"])
        assert {"set", "name", "style", "licence", "tags"} <= set(meta) and r["txt"] == meta["caption"]
    by_concept = {}
    for r in rows.values():
        meta = json.loads(r["json"])
        by_concept.setdefault(meta["concept"], set()).add(meta["split"])
    assert all(len(v) == 1 for v in by_concept.values())  # a concept never straddles the split
    assert (tmp_path / "all" / "eval" / "val-concepts.txt").is_file()


def test_prepare_png_writes_dark_glyphs_on_white(roots, tmp_path):
    import io

    from PIL import Image

    iconcorpus.prepare(tmp_path / "png", roots=roots, sources=["mdi"], format="png", size=32, workers=1,
                       progress=False)
    pngs = []
    for tar in sorted((tmp_path / "png").glob("*-*.tar")):
        with tarfile.open(tar) as t:
            pngs += [t.extractfile(m).read() for m in t.getmembers() if m.name.endswith(".png")]
    assert len(pngs) == 5  # the fixture's five mdi icons
    for data in pngs:
        img = Image.open(io.BytesIO(data))
        assert img.size == (32, 32) and img.mode == "RGB"
        a = np.asarray(img)
        assert a.min() < 100 and a.max() == 255
    with pytest.raises(ValueError, match="format"):
        iconcorpus.prepare(tmp_path / "jpeg", roots=roots, sources=["mdi"], format="jpeg", progress=False)


def test_prepare_common_holds_out_concept_set_pairs(roots, tmp_path, monkeypatch):
    monkeypatch.setattr(iconcorpus, "HELDOUT_PERCENT", 100)  # every common concept has a held-out pair
    stats = iconcorpus.prepare(tmp_path / "c", roots=roots, common=4, workers=1, progress=False,
                               sources=list(SETS))
    assert stats["common_concepts"] >= 3  # heart, home, star, bell are drawn by >= 4 sets
    pairs = [tuple(line.split("\t")) for line in
             (tmp_path / "c" / "eval" / "heldout-pairs.tsv").read_text().splitlines()[2:]]
    assert len(pairs) == stats["heldout_pairs"] == stats["common_concepts"]
    train = [json.loads(r["json"]) for r in _read_tars(tmp_path / "c", "train").values()]
    val = [json.loads(r["json"]) for r in _read_tars(tmp_path / "c", "val").values()]
    def has(m, concept, set_=None):  # a sample carries every drawing merged into it
        return any(iconsets.concept_of(x["name"], x["style"]) == concept and (set_ is None or x["set"] == set_)
                   for x in m["sources"])

    for concept, set_ in pairs:
        assert not any(has(m, concept, set_) for m in train)  # never in training
        assert any(has(m, concept) for m in train)  # but the concept is, from other sets
        assert any(has(m, concept, set_) for m in val)
    prompts = (tmp_path / "c" / "eval" / "heldout.tsv").read_text().splitlines()
    assert prompts[1].split("\t") == ["prompt", "category", "challenge", "concept", "key"]
    assert len(prompts) - 2 == len(val)


def test_cli_names_the_missing_or_unknown_set(tmp_path):
    r = subprocess.run([sys.executable, "-m", "argen.data", "prepare", "icons", "--sources", "mdi,nosuch",
                        "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "nosuch" in r.stderr


# -- the installed sets: round trip at grid 200 -------------------------------------------------------

def _installed_sample(key, n):
    icons = list(read_set(key))
    idx = np.linspace(0, len(icons) - 1, min(n, len(icons))).round().astype(int)
    return [icons[i].svg for i in idx]


def _roundtrip(key, n):
    results = iconcorpus.measure_all(_installed_sample(key, n), workers=1, progress=False)
    ok = [r for r in results if "reason" not in r]
    return len(ok) / len(results), float(np.mean([r["iou"] for r in ok]))


@pytest.mark.parametrize("key", list(SETS))
def test_roundtrip_per_set_on_a_fixed_subset(key):
    if key not in iconsets.installed():
        pytest.skip(f"{SETS[key].package} is not installed (pip install 'argen[icons]')")
    encoded, iou = _roundtrip(key, 24)
    assert encoded >= 0.98, f"{key}: {encoded:.1%} encode"
    assert iou >= iconcorpus.TARGETS[SETS[key].stroked], f"{key}: mean IoU {iou:.4f}"


@pytest.mark.slow
@pytest.mark.parametrize("key", list(SETS))
def test_roundtrip_per_set_whole(key):
    if key not in iconsets.installed():
        pytest.skip(f"{SETS[key].package} is not installed")
    encoded, iou = _roundtrip(key, 100_000)
    assert encoded >= 0.98 and iou >= iconcorpus.TARGETS[SETS[key].stroked], (key, encoded, iou)


def test_iconshop_icons_recipe_smoke_runs_on_cpu(roots, tmp_path):
    """train/iconshop-icons.yaml through the real CLI for a few CPU steps, on a fixture corpus (the
    model shrunk; everything else as the recipe says)."""
    from argen.data.recipes import tokenizer_for

    data = tmp_path / "icons"
    iconcorpus.prepare(data, roots=roots, sources=list(SETS), workers=1, progress=False)
    tokenizer_for(str(data / "train-*.tar"), 60, data / "tokenizer.json", progress=False)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "argen.train", "fit", "-c", "train/iconshop-icons.yaml",
           "--trainer.default_root_dir", str(run), "--trainer.accelerator", "cpu", "--trainer.devices", "1",
           "--trainer.strategy", "auto", "--trainer.precision", "32-true", "--trainer.max_steps", "3",
           "--trainer.val_check_interval", "3", "--trainer.limit_val_batches", "1", "--trainer.logger", "false",
           "--checkpoint.every_n_train_steps", "3", "--model.init_args.sample_every_n_steps", "0",
           "--model.init_args.arch", "{d_model: 32, n_heads: 2, enc_layers: 1, dec_layers: 1, d_ff: 64}",
           "--data.init_args.prepare", "null", "--data.init_args.train_shards", str(data / "train-*.tar"),
           "--data.init_args.val_shards", str(data / "val-*.tar"),
           "--data.init_args.text_tokenizer", str(data / "tokenizer.json"),
           "--data.init_args.batch_size", "4", "--data.init_args.num_workers", "0",
           "--data.init_args.steps_per_epoch", "3"]
    r = subprocess.run(cmd, cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (run / "export").is_dir() and (run / "checkpoints" / "last.ckpt").is_file()
    gen = Generator.from_pretrained(run / "export")  # with the training drawings, for speculative drafts
    assert gen.corpus is not None and all(s[-1] == gen.target.eos_id for s in gen.corpus.sequences)
