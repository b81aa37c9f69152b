"""Emoji shards from npm packs (a fixture pack in the real layout, built here), and ``argen.eval emoji``."""

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from toys import load_benchmark

from argen.data import emoji as E
from argen.data.recipes import tokenizer_for
from argen.eval import emoji as EE
from argen.text import TextTokenizer

CATEGORIES = {"Smileys & Emotion": ("face-smiling", (240, 200, 0)),
              "Animals & Nature": ("animal-mammal", (150, 90, 30)), "Food & Drink": ("food-fruit", (220, 30, 30))}
TONES = ("1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF")


def emoji_entries(n_per_category: int = 10) -> list[dict]:
    """An emoji.json in emoji-datasource's format: concepts in three categories, some with skin tones,
    one with FE0F in its code points, and one Component entry (left out by prepare)."""
    out, code = [], 0x1F600
    for cat, (sub, _) in CATEGORIES.items():
        for i in range(n_per_category):
            unified = f"{code:X}" + ("-FE0F" if i == 1 else "")
            e = {"name": f"TEST {cat.split()[0].upper()} {i}", "unified": unified, "image": f"{unified.lower()}.png",
                 "short_names": [f"t{code:x}"], "category": cat, "subcategory": sub}
            if i < 2:
                e["skin_variations"] = {t: {"unified": f"{code:X}-{t}", "image": f"{code:x}-{t.lower()}.png"}
                                        for t in TONES}
            out.append(e)
            code += 1
    out.append({"name": "EMOJI MODIFIER FITZPATRICK TYPE-1-2", "unified": "1F3FB", "category": "Component",
                "subcategory": "skin-tone"})
    return out


def draw(vendor: str, category: str, index: int, tone: int, size: int) -> Image.Image:
    """A transparent RGBA emoji: the shape says the vendor, the colour the category, a dot the index."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    base = np.array(CATEGORIES[category][1]) * (1 - 0.1 * tone)
    fill = tuple(int(c) for c in base) + (255,)
    s = size
    if vendor == "google":
        d.ellipse((s * 0.1, s * 0.1, s * 0.9, s * 0.9), fill=fill, outline=(0, 0, 0, 255), width=max(1, s // 32))
    elif vendor == "twitter":
        d.rectangle((s * 0.15, s * 0.15, s * 0.85, s * 0.85), fill=fill)
    else:
        for k in range(8):  # a shaded "3-D" ball
            r = s * (0.4 - 0.04 * k)
            c = tuple(min(255, int(x + 18 * k)) for x in base) + (255,)
            d.ellipse((s / 2 - r, s / 2 - r, s / 2 + r, s / 2 + r), fill=c)
    x = s * (0.3 + 0.04 * (index % 10))
    d.ellipse((x, s * 0.4, x + s * 0.1, s * 0.5), fill=(255, 255, 255, 255))
    return img


def write_pack(root: Path, vendor: str, entries: list[dict], as_tar: bool) -> Path:
    """A pack as npm leaves it: ``package/`` with package.json (+ emoji.json and img/<vendor>/64/*.png
    for emoji-datasource, assets/*.webp at 256 px for Fluent 3D), as a .tgz or an unpacked folder."""
    files: dict[str, bytes] = {}
    name = "@lobehub/fluent-emoji-3d" if vendor == "fluent3d" else f"emoji-datasource-{vendor}"
    files["package/package.json"] = json.dumps({"name": name, "version": "0.0.0", "license": "MIT"}).encode()
    if vendor != "fluent3d":
        files["package/emoji.json"] = json.dumps(entries).encode()
    for e in entries:
        if e["category"] == "Component":
            continue
        idx = int(e["unified"].split("-")[0], 16) % 10
        variants = [(e["unified"], 0)] + [(v["unified"], k + 1) for k, v in
                                          enumerate((e.get("skin_variations") or {}).values())]
        for unified, tone in variants:
            buf = io.BytesIO()
            if vendor == "fluent3d":
                stem = unified.lower().replace("-fe0f", "")  # Fluent's names drop FE0F
                draw(vendor, e["category"], idx, tone, 256).save(buf, format="WEBP", lossless=True)
                files[f"package/assets/{stem}.webp"] = buf.getvalue()
            else:
                draw(vendor, e["category"], idx, tone, 64).save(buf, format="PNG")
                files[f"package/img/{vendor}/64/{unified.lower()}.png"] = buf.getvalue()
    if as_tar:
        path = root / f"{name.replace('@', '').replace('/', '-')}-0.0.0.tgz"
        with tarfile.open(path, "w:gz") as tar:
            for member, data in files.items():
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path
    folder = root / f"{vendor}-unpacked"
    for member, data in files.items():
        (folder / member).parent.mkdir(parents=True, exist_ok=True)
        (folder / member).write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def packs(tmp_path_factory):
    root = tmp_path_factory.mktemp("packs")
    entries = emoji_entries()
    return [write_pack(root, "google", entries, as_tar=True), write_pack(root, "twitter", entries, as_tar=False),
            write_pack(root, "fluent3d", entries, as_tar=True)]


@pytest.fixture(scope="module")
def shards(packs, tmp_path_factory):
    out = tmp_path_factory.mktemp("emoji32")
    counts = E.prepare(packs, out, size=32, val_fraction=0.15, heldout_pairs=6, progress=False)
    tokenizer_for(str(out / "train-*.tar"), 64, out / "tokenizer.json", progress=False)
    return out, counts


def read_split(folder: Path, split: str) -> list[dict]:
    rows = []
    for tar_path in sorted(folder.glob(f"{split}-*.tar")):
        with tarfile.open(tar_path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
        for name in members:
            if name.endswith(".json"):
                key = name[:-5]
                rows.append({"key": key, "meta": json.loads(members[name]), "caption": members[key + ".txt"].decode(),
                             "image": Image.open(io.BytesIO(members[key + ".png"]))})
    return rows


def test_prepare_splits_by_concept_and_holds_out_pairs(shards):
    out, counts = shards
    train, val, held = (read_split(out, s) for s in ("train", "val", "heldout"))
    # 30 concepts, 6 with 5 skin tones -> 60 variants per vendor; the Component entry is left out.
    assert len(train) + len(val) + len(held) == 3 * 60 == sum(c["images"] for c in counts["splits"].values())
    concepts = {s: {r["meta"]["concept"] for r in rows} for s, rows in (("train", train), ("val", val))}
    assert val and not concepts["train"] & concepts["val"]  # a val concept is never trained, in any vendor
    pairs = E.read_heldout_tsv(out / "heldout.tsv")
    assert len(pairs) == 6 and {p["vendor"] for p in pairs} == {"google", "twitter", "fluent3d"}
    trained = {(r["meta"]["concept"], r["meta"]["vendor"]) for r in train}
    for p in pairs:
        assert (p["concept"], p["vendor"]) not in trained  # never in this vendor's style...
        assert any((p["concept"], v) in trained for v in E.VENDORS if v != p["vendor"])  # ...but in another's
        assert p["concept"] not in concepts["val"]
    held_pairs = {(r["meta"]["concept"], r["meta"]["vendor"]) for r in held}
    assert held_pairs == {(p["concept"], p["vendor"]) for p in pairs}  # every tone of a pair goes with it


def test_samples_have_captions_metadata_and_white_backgrounds(shards):
    out, _ = shards
    rows = read_split(out, "train") + read_split(out, "val") + read_split(out, "heldout")
    for r in rows:
        m = r["meta"]
        assert set(m) >= {"code_points", "name", "category", "subcategory", "vendor", "skin_tone", "licence"}
        assert r["caption"].endswith(f"{E.VENDOR_WORDS[m['vendor']]} style")
        assert r["caption"].startswith(m["name"] + ", ")
        assert (m["skin_tone"] is None) == ("skin tone" not in r["caption"])
        assert r["image"].mode == "RGB" and r["image"].size == (32, 32)
        assert r["image"].getpixel((0, 0)) == (255, 255, 255)  # transparency composited on white
    by_key = {r["key"]: r for r in rows}
    # FE0F in emoji.json, not in Fluent's file names: still joined; Fluent's 256 px renders are resized.
    fe0f = next(r for r in rows if r["meta"]["code_points"] == "1F601-FE0F" and r["meta"]["vendor"] == "fluent3d")
    assert fe0f["caption"] == "test smileys 1, face smiling, fluent 3d style"
    tone = by_key.get("twitter-1f600-1f3fd")
    assert tone is not None and tone["caption"] == "test smileys 0, medium skin tone, face smiling, twitter style"
    assert tone["meta"]["licence"].startswith("CC-BY-4.0")


def test_prepare_is_deterministic_and_ignores_pack_order(packs, shards, tmp_path):
    out, _ = shards
    again = tmp_path / "again"
    E.prepare(list(reversed(packs)), again, size=32, val_fraction=0.15, heldout_pairs=6, progress=False)
    assert (again / "heldout.tsv").read_text() == (out / "heldout.tsv").read_text()
    for split in ("train", "val", "heldout"):
        a, b = sorted(out.glob(f"{split}-*.tar")), sorted(again.glob(f"{split}-*.tar"))
        assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_prepare_cli_and_clear_errors(packs, tmp_path):
    out = tmp_path / "cli"
    run = subprocess.run([sys.executable, "-m", "argen.data", "prepare", "emoji", "--from", *map(str, packs[:2]),
                          "--out", str(out), "--size", "16", "--heldout-pairs", "4", "--vocab-size", "0"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "train:" in run.stdout and (out / "heldout.tsv").is_file() and not (out / "tokenizer.json").exists()
    run = subprocess.run([sys.executable, "-m", "argen.data", "prepare", "emoji", "--from", *map(str, packs[:2]),
                          "--out", str(out), "--size", "16", "--heldout-pairs", "4", "--vocab-size", "40"],
                         capture_output=True, text=True)
    assert run.returncode == 0 and TextTokenizer.from_file(out / "tokenizer.json").vocab_size == 40, run.stderr
    assert read_split(out, "train")[0]["image"].size == (16, 16)

    def fails(args, match):
        r = subprocess.run([sys.executable, "-m", "argen.data", "prepare", "emoji", *args,
                            "--out", str(tmp_path / "x")], capture_output=True, text=True)
        assert r.returncode != 0 and match in r.stderr, r.stderr

    fails(["--from", str(packs[2])], "no pack carries emoji.json")
    fails(["--from", str(tmp_path / "missing.tgz")], "missing.tgz does not exist")
    fails([], "needs --from")
    apple = tmp_path / "apple"
    (apple / "package").mkdir(parents=True)
    (apple / "package" / "package.json").write_text(json.dumps({"name": "emoji-datasource-apple"}))
    fails(["--from", str(apple)], "licence does not allow")
    fails(["--from", str(packs[0]), str(packs[0])], "more than once")


def test_caption_words_and_code_points():
    assert E.caption("fox", "animal-mammal", "twitter") == "fox, animal mammal, twitter style"
    assert E.caption("man", "person", "fluent3d", "1F3FB-1F3FF") == \
        "man, light and dark skin tones, person, fluent 3d style"
    assert E.norm_codes("2764-FE0F.png") == E.norm_codes("2764") == "2764"
    with pytest.raises(ValueError, match="not a code point"):
        E.norm_codes("readme.md")


def test_shuffled_floor_and_grid_choice():
    labels = torch.tensor([0] * 30 + [1] * 70)
    constant = torch.zeros(100, dtype=torch.long)
    assert EE.shuffled_floor(constant, labels) == pytest.approx(0.3)  # a prompt-blind model scores the base rate
    assert EE.shuffled_floor(labels, labels) == pytest.approx(0.3 ** 2 + 0.7 ** 2, abs=0.03)
    pairs = [{"vendor": v, "key": f"{v}-{i}"} for v in ("a", "b", "c") for i in range(20)]
    shown = EE.grid_pairs(pairs, 16)
    assert len(set(shown)) == 16 and {pairs[i]["vendor"] for i in shown} == {"a", "b", "c"}


def test_probe_learns_vendor_and_category_from_real_images(shards):
    out, _ = shards
    rows = EE.read_real(str(out / "train-*.tar"), 32)
    probe = EE.Probe(E.VENDORS, sorted(CATEGORIES), "cnn", epochs=12).fit(rows)
    held = EE.read_real(str(out / "heldout-*.tar"), 32)
    pv, pc = probe.predict(np.stack([r["image"] for r in held]))
    yv = torch.tensor([E.VENDORS.index(r["vendor"]) for r in held])
    assert probe.train_accuracy["vendor"] > 0.9 and (pv == yv).float().mean() > 0.7


def test_probe_reads_an_image_with_its_mirror():
    """Trained on mirrored copies under the same labels, the probe reads a picture and its mirror
    together, so both get the same answer. A lopsided net (it answers by which half is brighter)
    shows it: alone, it reads an image and its mirror differently."""
    class Lopsided(torch.nn.Module):
        def forward(self, x):
            left, right = x[..., : x.shape[-1] // 2].mean((1, 2, 3)), x[..., x.shape[-1] // 2:].mean((1, 2, 3))
            logits = torch.stack([left, right, torch.zeros_like(left)], 1)
            return logits, logits

    probe = EE.Probe(E.VENDORS, sorted(CATEGORIES))
    probe.net = Lopsided()
    image = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    image[:, :, :16] = 255  # bright on the left
    mirror = np.ascontiguousarray(image[:, :, ::-1])
    assert [int(probe.net(EE._to_input(x))[0].argmax()) for x in (image, mirror)] == [0, 1]
    for a, b in zip(probe.predict(image), probe.predict(mirror), strict=True):
        assert torch.equal(a, b)


def test_probe_cache_is_keyed_by_image_size_and_threads(shards, tmp_path):
    """The same samples read at another size (an export with a smaller tokenizer), or a probe trained on
    another number of threads (other sums, another probe), get their own cache entry."""
    from argen.eval.cache import Cache
    from argen.eval.fid import FID

    out, _ = shards
    store, fid = Cache(tmp_path), FID("randconv", None, "cpu")
    threads = torch.get_num_threads()
    try:
        for size, n in ((32, 1), (24, 1), (32, 1), (32, 2)):
            torch.set_num_threads(n)
            train = EE.read_real(str(out / "train-*.tar"), size)
            EE.references(train, train[:4], E.VENDORS, sorted(CATEGORIES), fid, store, probe_epochs=1,
                          fid_reference=8)
    finally:
        torch.set_num_threads(threads)
    assert len(list(tmp_path.glob("emoji-probe-*.safetensors"))) == 3


@pytest.fixture(scope="module")
def emoji_export(shards, tmp_path_factory):
    """An untrained generator on a tiny 32 px tokenizer, with the config.yaml training saves beside it."""
    from argen.text import TextTokenizer
    from argen.transformer.lit import Seq2SeqModule
    from argen.transformer.model import EncoderDecoder, config_from_preset
    from argen.vqgan import VQGAN, ImageTarget, ImageTokenizer, VQGANConfig

    out, _ = shards
    root = tmp_path_factory.mktemp("emoji-run")
    torch.manual_seed(0)
    ImageTokenizer(VQGAN(VQGANConfig(image_size=32, patch_size=8, dim=32, enc_layers=1, dec_layers=1, heads=2,
                                     mlp_dim=64, codebook_size=64, code_dim=8, kmeans_init=False))
                   ).save_pretrained(root / "tokenizer")
    text = TextTokenizer.from_file(out / "tokenizer.json")
    target = ImageTarget(str(root / "tokenizer"))
    module = Seq2SeqModule(target=target, preset="demo")
    module.net = EncoderDecoder(config_from_preset(
        "demo", text_vocab_size=text.vocab_size, max_text_len=32, target_vocab_size=target.vocab_size,
        max_target_len=target.max_len, target_feature_sizes=tuple(target.feature_sizes), d_model=32, n_heads=2,
        enc_layers=1, dec_layers=1, d_ff=64))
    module.text_tokenizer = text
    module.export(root / "export")
    (root / "config.yaml").write_text(f"data:\n  init_args:\n    train_shards: {out}/train-*.tar\n")
    return root / "export"


def test_eval_emoji_end_to_end(emoji_export, tmp_path):
    from argen.eval.__main__ import main

    out = tmp_path / "eval"
    assert main(["emoji", str(emoji_export), "--out", str(out), "--fid-features", "randconv", "--probe-epochs", "6",
                 "--fid-reference", "40", "--no-progress", "--cache", str(tmp_path / "cache")]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for k in ("vendor_accuracy", "category_accuracy", "vendor_floor", "category_floor", "vendor_ceiling",
              "category_ceiling", "fid", "fid_features"):
        assert k in m
    assert m["fid_features"] == "randconv-v1" and m["metrics"]["pairs"] == 6 and m["metrics"]["samples"] == 12
    assert all(0 <= m[k] <= 1 for k in ("vendor_accuracy", "vendor_floor", "vendor_ceiling"))
    assert all(0 <= m["metrics"][k] <= 1 for k in ("vendor_tokenizer_ceiling", "category_tokenizer_ceiling"))
    assert m["fid"] > 0 and m["fid_real_vs_real"] > 0
    report = (out / "report.md").read_text()
    assert "tokenizer ceiling (real images, tokenized)" in report and "randconv-v1" in report
    assert (out / "heldout-samples.png").is_file()
    cached = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "cache").glob("*.safetensors"))
    assert cached == ["emoji-heldout", "emoji-probe", "emoji-reference"]
    again = tmp_path / "again"  # a second run reads the probe and real features back: same ceilings
    assert main(["emoji", str(emoji_export), "--out", str(again), "--fid-features", "randconv", "--probe-epochs", "6",
                 "--fid-reference", "40", "--no-progress", "--cache", str(tmp_path / "cache")]) == 0
    m2 = json.loads((again / "metrics.json").read_text())
    assert (m2["vendor_ceiling"], m2["category_ceiling"], m2["fid"]) == (m["vendor_ceiling"], m["category_ceiling"],
                                                                         m["fid"])
    assert main(["emoji", str(emoji_export), "--out", str(out), "--pairs", str(tmp_path / "none.tsv")]) == 2


def test_probe_benchmark_scores_each_configuration(shards, capsys):
    """benchmarks/emoji_probe.py: one row per EPOCHSxWIDTH, read on the held-out pairs' real images."""
    out, _ = shards
    rows = load_benchmark("emoji_probe").main(["--shards", str(out / "train-*.tar"), "--configs", "8x16", "1x4",
                                               "--threads", "1"])
    assert [(r["epochs"], r["width"]) for r in rows] == [(8, 16), (1, 4)]
    assert all(0 <= r["vendor"] <= 1 and 0 <= r["category"] <= 1 for r in rows)
    assert rows[0]["vendor"] > 0.7  # the fixture's vendors differ in colour: a trained probe reads them
    assert capsys.readouterr().out.count("held-out images") == 2
