"""Stage 2 through its public surfaces: the LightningModule learns, exports, and Generator samples."""

import itertools
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from toys import load_benchmark

from argen.data import ShardDataModule
from argen.data.icons import caption, load_icons
from argen.data.shards import write_shards
from argen.generator import Generator
from argen.svg import SVGTokenizer
from argen.text import TextTokenizer
from argen.transformer.drafts import CorpusDrafts
from argen.transformer.lit import Seq2SeqModule
from argen.transformer.speculative import SpeculativeStats

ROOT = Path(__file__).resolve().parents[1]
TINY = {"d_model": 64, "n_heads": 2, "enc_layers": 1, "dec_layers": 2, "d_ff": 128}
ICON_SLUGS = ["home", "heart", "star", "bell", "folder", "magnify", "account", "cog"]


@pytest.fixture(scope="module")
def icons(tmp_path_factory):
    """Eight real Material Design icons as a webdataset shard, plus their text tokenizer."""
    d = tmp_path_factory.mktemp("icons")
    chosen = {slug: svg for slug, svg in load_icons() if slug in ICON_SLUGS}
    assert len(chosen) == len(ICON_SLUGS)
    samples = [{"__key__": slug, "svg": svg, "txt": caption(slug)} for slug, svg in chosen.items()]
    write_shards(samples, d, "train", per_shard=8, progress=False)
    write_shards(samples, d, "val", per_shard=8, progress=False)
    TextTokenizer.train([caption(s) for s in chosen] * 4, vocab_size=64).save(d / "tokenizer.json")
    return d


def tiny_module(**kwargs) -> Seq2SeqModule:
    target = SVGTokenizer(grid=16, max_len=96)
    return Seq2SeqModule(target, preset="demo", arch=TINY, lr=3e-3, warmup_steps=5, **kwargs)


def built(text: TextTokenizer, **kwargs) -> Seq2SeqModule:
    torch.manual_seed(0)
    module = tiny_module(**kwargs)
    module.build(text, max_text_len=16)
    return module


def test_learns_icons_loss_falls_and_exports(icons, tmp_path):
    dm = ShardDataModule(train_shards=str(icons / "train-*.tar"), val_shards=str(icons / "val-*.tar"),
                         text_tokenizer=str(icons / "tokenizer.json"), max_text_len=16, batch_size=8,
                         num_workers=0, load_image=False, load_svg=True, steps_per_epoch=20, shuffle_buffer=8)
    torch.manual_seed(0)  # the network is built at fit from the global generator
    module = tiny_module(cfg_dropout=0.0)
    trainer = pl.Trainer(max_steps=60, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1,
                         val_check_interval=20, check_val_every_n_epoch=None, num_sanity_val_steps=0)
    trainer.fit(module, dm)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    module.eval()
    with torch.no_grad():
        trained, _ = module._loss(batch)
        fresh = built(dm.text_tokenizer, cfg_dropout=0.0)
        untrained, _ = fresh._loss(batch)
    assert trained < 0.5 * untrained, (float(trained), float(untrained))  # it memorises 8 icons

    # The export keeps the training drawings (those within max_len) for speculative drafts.
    corpus = CorpusDrafts(dm.target_sequences(module.target, 100_000))
    assert len(corpus.sequences) == 7 and all(s[-1] == module.target.eos_id for s in corpus.sequences)
    module.export(tmp_path / "export", corpus=corpus)
    gen = Generator.from_pretrained(tmp_path / "export")
    assert gen.corpus.sequences == corpus.sequences
    svgs = gen.generate(["home", "heart"], num_samples=2, seed=3, top_k=1)
    assert [len(s) for s in svgs] == [2, 2] and all(s.startswith("<svg") for row in svgs for s in row)
    in_memory = module.generator().generate(["home", "heart"], num_samples=2, seed=3, top_k=1)
    assert svgs == in_memory  # the bundle is the model
    passes = {}
    for drafts in (None, gen.corpus):  # its drafts (and the rows' own, for a looping sample) save passes
        gen.corpus, stats = drafts, SpeculativeStats()
        assert gen.generate(["home", "heart"], num_samples=2, seed=3, top_k=1, speculative=4, stats=stats) == svgs
        passes[drafts is not None] = stats.passes
    assert passes[True] < passes[False], passes
    module.export(tmp_path / "export")  # exported again without a corpus: the old one is gone
    assert Generator.from_pretrained(tmp_path / "export").corpus is None

    # benchmarks/caption_use.py: a decoder that learnt 8 captioned icons pays for the wrong caption (a
    # little: it learns them mostly by their prefix, as the IconShop demo does; 0.01-0.05 nats for seeds 1-3)
    caption_use = load_benchmark("caption_use")
    losses = caption_use.caption_losses(gen, caption_use.first_samples(str(icons / "val-*.tar"), 8, svg=True), 16)
    assert losses["samples"] == 7 and losses["own"] < losses["shuffled"], losses  # 1 icon is too long
    parts = losses["by_position"]  # the ranges split the same tokens: their weighted mean is the whole
    assert parts[0]["positions"] == [0, 1] and sum(b["tokens"] for b in parts) > 7 * 10
    whole = sum(b["own"] * b["tokens"] for b in parts) / sum(b["tokens"] for b in parts)
    assert abs(whole - losses["own"]) < 1e-4 and parts[0]["own"] < losses["own"]  # PATH always comes first


def test_feature_head_module_exports_its_id_features(icons, tmp_path):
    """The SVG target's point coordinates reach the head at build time and travel in the bundle."""
    text = TextTokenizer.from_file(icons / "tokenizer.json")
    torch.manual_seed(0)
    module = Seq2SeqModule(SVGTokenizer(grid=16, max_len=96), preset="demo", arch={**TINY, "feature_head": True})
    module.build(text, max_text_len=16)
    torch.testing.assert_close(module.net.id_features, module.target.id_features())
    assert module.net.id_features[8 + 3 + 5 * 16].tolist() == [4, 6]  # point (3, 5): x+1, y+1
    module.export(tmp_path / "export")
    gen = Generator.from_pretrained(tmp_path / "export")
    assert gen.net.config.feature_head and torch.equal(gen.net.id_features, module.net.id_features)
    greedy = gen.generate(["home"], seed=1, top_k=1)
    assert greedy == module.generator().generate(["home"], seed=1, top_k=1)
    assert greedy == gen.generate(["home"], seed=1, top_k=1, use_cache=False)  # packed head = unpacked head


def test_cfg_dropout_replaces_the_configured_share_by_the_empty_caption(icons):
    text = TextTokenizer.from_file(icons / "tokenizer.json")
    module = built(text, cfg_dropout=0.3)
    ids, mask = text.encode(["home"] * 4000, max_len=16)
    torch.manual_seed(1)
    new_ids, new_mask = module.cfg_dropout(ids, mask, 0.3)
    null_ids, _ = text.encode([""], max_len=16)
    dropped = (new_ids[:, : null_ids.shape[1]] == null_ids).all(1) & (new_mask.sum(1) == null_ids.shape[1])
    assert abs(dropped.float().mean().item() - 0.3) < 0.03  # binomial sd 0.007
    kept = ~dropped
    assert torch.equal(new_ids[kept], ids[kept]) and torch.equal(new_mask[kept], mask[kept])
    assert not module.cfg_dropout(ids, mask, 0.0)[0].ne(ids).any()


def test_skipped_samples_are_dropped_from_the_step_not_run_as_padding(icons):
    """A sample the target skips costs no compute and changes no loss; an all-skipped batch is a no-op."""
    text = TextTokenizer.from_file(icons / "tokenizer.json")
    module = built(text)
    svgs = [svg for slug, svg in load_icons() if slug in ("home", "heart")]
    ids, mask = text.encode(["home", "not svg", "heart"], max_len=16)
    batch = {"svg": [svgs[0], "<svg", svgs[1]], "text_ids": ids, "text_mask": mask}
    kept = {"svg": [svgs[0], svgs[1]], "text_ids": ids[[0, 2]], "text_mask": mask[[0, 2]]}
    with torch.no_grad():
        loss, targets = module._loss(batch)
        reference, _ = module._loss(kept)
    assert targets.shape[0] == 2 and module.target.skipped["malformed"] >= 1
    torch.testing.assert_close(loss, reference)
    nothing = {"svg": ["<svg"], "text_ids": ids[:1], "text_mask": mask[:1]}
    loss, _ = module._loss(nothing)
    loss.backward()  # still a graph, so a DDP step that skips everything stays in step with its peers
    assert loss.item() == 0.0


def test_prefix_loss_weight_counts_the_first_tokens_more(icons):
    text = TextTokenizer.from_file(icons / "tokenizer.json")
    module = built(text)
    svgs = [svg for slug, svg in load_icons() if slug in ("home", "heart")]
    ids, mask = text.encode(["home", "heart"], max_len=16)
    batch = {"svg": svgs, "text_ids": ids, "text_mask": mask}
    with torch.no_grad():
        plain, targets = module._loss(batch)
        weighted, _ = module._loss(batch, prefix_weight=5.0, prefix_tokens=2)
        inputs = module.net.shift_right(targets)
        logits = module.net(ids, mask, inputs, module.target.token_features(inputs, torch.arange(inputs.shape[1])))
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    real = targets != module.target.pad_id
    torch.testing.assert_close(plain, nll[real].mean())
    by_hand = (nll[real].sum() + 4 * nll[:, :2].sum()) / (real.sum() + 4 * 4)
    torch.testing.assert_close(weighted, by_hand)
    assert not torch.isclose(weighted, plain)
    for bad in ({"prefix_loss_weight": 0.0}, {"prefix_loss_tokens": -1}):
        with pytest.raises(ValueError, match="prefix_loss"):
            tiny_module(**bad)


@pytest.fixture(scope="module")
def generator(icons):
    text = TextTokenizer.from_file(icons / "tokenizer.json")
    module = built(text)
    return module.generator()


def test_generate_seed_is_batch_independent_and_rerank_reorders(generator):
    both = generator.generate(["home", "bell"], num_samples=3, seed=7)
    alone = generator.generate(["bell"], num_samples=3, seed=7)
    assert both[1] == alone[0]
    assert generator.generate(["home"], num_samples=3, seed=7)[0] == both[0]
    ranked = generator.generate(["home"], num_samples=3, seed=7, rerank=True)[0]
    assert sorted(ranked) == sorted(both[0])
    by_length = generator.generate(["home"], num_samples=3, seed=7, rerank=lambda p, outs: [len(o) for o in outs])
    assert [len(s) for s in by_length[0]] == sorted((len(s) for s in both[0]), reverse=True)


@pytest.mark.parametrize("kwargs, message", [
    ({"prompts": []}, "empty"), ({"prompts": "home"}, "list"), ({"prompts": ["ok", 3]}, "not a string"),
    ({"num_samples": 0}, "num_samples"), ({"temperature": -1.0}, "temperature"), ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"), ({"cfg_scale": -0.5}, "cfg_scale"), ({"top_k": 0}, "top_k"),
])
def test_generate_rejects_bad_arguments_clearly(generator, kwargs, message):
    args = {"prompts": ["home"], **kwargs}
    with pytest.raises(ValueError, match=message):
        generator.generate(**args)


def test_long_prompt_is_truncated_with_a_warning(generator):
    with pytest.warns(UserWarning):
        out = generator.generate([" ".join(itertools.repeat("home", 50))], seed=0)
    assert len(out) == 1 and out[0][0].startswith("<svg")


def test_complete_keeps_the_given_paths(generator, icons):
    prefix_svg = dict(load_icons())["home"]
    tokens = generator.target.encode_prefix(prefix_svg)
    out = generator.complete("home", prefix_svg, num_samples=1, seed=0)[0]
    assert generator.target.encode(out)[: len(tokens)].tolist() == tokens.tolist()


def test_from_pretrained_refuses_wrong_or_missing_bundles(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an argen export"):
        Generator.from_pretrained(tmp_path)
    SVGTokenizer(grid=16).save_pretrained(tmp_path / "svg")
    with pytest.raises(ValueError, match="svg_tokenizer"):
        Generator.from_pretrained(tmp_path / "svg")


def test_print_config_round_trips_with_overrides(tmp_path):
    def printed(*args):
        cmd = [sys.executable, "-m", "argen.train", "fit", *args, "--print_config"]
        return subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout

    first = printed("-c", "train/iconshop-demo.yaml", "--trainer.max_steps", "7",
                    "--model.init_args.lr", "0.0123", "--trainer.default_root_dir", str(tmp_path / "run"))
    config = yaml.safe_load(first)
    assert config["trainer"]["max_steps"] == 7 and config["model"]["init_args"]["lr"] == 0.0123
    assert config["model"]["init_args"]["target"]["class_path"] == "argen.svg.SVGTokenizer"
    assert config["checkpoint"]["dirpath"] is None  # resolved per run from default_root_dir
    (tmp_path / "printed.yaml").write_text(first)
    assert printed("-c", str(tmp_path / "printed.yaml")) == first  # the printed YAML is the same job


def test_module_contracts_are_declared_and_checked(icons):
    """argen.contracts: what Throughput and configure_model read off the modules, checked by type."""
    from argen.contracts import ModelShape, TextData

    dm = ShardDataModule(train_shards=str(icons / "train-*.tar"), text_tokenizer=str(icons / "tokenizer.json"),
                         max_text_len=16, num_workers=0, load_image=False, load_svg=True)
    assert isinstance(dm, TextData)
    assert not isinstance(tiny_module(), ModelShape)  # no network yet: nothing to count
    module = built(dm.text_tokenizer)
    assert isinstance(module, ModelShape) and module.model_config.d_model == TINY["d_model"]

    class NoText(pl.LightningDataModule):
        def train_dataloader(self):
            return [{"svg": []}]

    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(TypeError, match="text_tokenizer and max_text_len"):
        trainer.fit(tiny_module(), NoText())
