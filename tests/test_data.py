"""Shards on real tars: specs, decoding, bad samples, splitting across ranks and workers, the data
module under real Lightning, and the CLI."""

import io
import json
import shutil
import subprocess
import sys
import tarfile

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image
from tokenizers import Tokenizer

from argen.data import ShardDataModule, shapes
from argen.data.recipes import prepare_recipe
from argen.data.shards import (
    BadDataError,
    expand_shards,
    make_loader,
    shard_stats,
    write_shards,
)


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def gradient(w, h):
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    return Image.fromarray(np.concatenate([x + 0 * y, y + 0 * x, 128 + 0 * x * y], 2).astype(np.uint8))


def messy_samples():
    """img2dataset-style samples: JPEG/PNG of mixed sizes and modes, one corrupt image, one sample
    without caption, one with an empty caption."""
    rgba = Image.new("RGBA", (30, 30), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (10, 10, 20, 20))
    p_trns = Image.new("P", (20, 20), 1)
    p_trns.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    p_trns.info["transparency"] = 0
    images = {
        "rgb_jpg": ("jpg", encoded(gradient(40, 30), "JPEG")),
        "gray_jpg": ("jpg", encoded(gradient(50, 70).convert("L"), "JPEG")),
        "cmyk_jpg": ("jpg", encoded(gradient(64, 48).convert("CMYK"), "JPEG")),
        "rgba_png": ("png", encoded(rgba, "PNG")),
        "la_png": ("png", encoded(gradient(33, 33).convert("LA"), "PNG")),
        "p_png": ("png", encoded(gradient(36, 28).convert("P"), "PNG")),
        "ptrns_png": ("png", encoded(p_trns, "PNG", transparency=0)),
        "i16_png": ("png", encoded(Image.fromarray(np.full((20, 60), 65535, np.uint16)), "PNG")),
        "big_png": ("png", encoded(gradient(300, 200), "PNG")),
        "corrupt": ("jpg", b"\xff\xd8\xff\xe0 this is not a jpeg"),
        "nocaption": ("png", encoded(gradient(24, 24), "PNG")),
        "emptycaption": ("png", encoded(gradient(24, 24), "PNG")),
    }
    for i, (key, (ext, data)) in enumerate(images.items()):
        sample = {"__key__": f"{i:04d}_{key}", ext: data, "json": {"key": key, "status": "success"}}
        if key != "nocaption":
            sample["txt"] = "   " if key == "emptycaption" else f"a picture called {key}"
        yield sample


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    d = tmp_path_factory.mktemp("messy")
    samples = list(messy_samples())
    for shard, part in enumerate((samples[:6], samples[6:])):
        with wds.TarWriter(str(d / f"{shard:05d}.tar")) as sink:  # plain webdataset, not our writer
            for s in part:
                sink.write(s)
    return d


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("shapes")
    prepare_recipe({"dataset": "shapes", "out": str(d), "train": 96, "val": 20, "size": 32}, progress=False)
    return d


def grid_shards(d, n_shards=8, per=6, extra=None):
    for s in range(n_shards):
        with wds.TarWriter(str(d / f"g-{s:02d}.tar")) as sink:
            for i in range(per):
                sample = {"__key__": f"s{s}-{i}", "txt": f"shard {s} sample {i}",
                          "png": encoded(Image.new("RGB", (8, 8), (s * 30, i * 40, 0)), "PNG")}
                sample.update(extra or {})
                sink.write(sample)
    return str(d / "g-*.tar")


# -- specs -----------------------------------------------------------------------------------------
def test_expand_shards(messy, tmp_path):
    assert expand_shards(str(messy / "{00000..00001}.tar")) == [str(messy / "00000.tar"), str(messy / "00001.tar")]
    assert expand_shards(str(messy / "*.tar")) == expand_shards([str(messy / "00000.tar"), str(messy / "00001.tar")])
    assert expand_shards(f"file://{messy}/00000.tar") == [f"{messy}/00000.tar"]
    assert expand_shards("pipe:cat x.tar") == ["pipe:cat x.tar"]  # URLs pass through untouched
    with pytest.raises(FileNotFoundError, match="00002.tar"):
        expand_shards(str(messy / "{00000..00002}.tar"))
    with pytest.raises(FileNotFoundError, match="nothing-"):
        expand_shards(str(tmp_path / "nothing-*.tar"))
    with pytest.raises(IsADirectoryError, match="directory"):
        expand_shards(str(messy))
    with pytest.raises(ValueError, match="empty"):
        expand_shards([])


def test_missing_shard_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-000003.tar"):
        make_loader(str(tmp_path / "train-{000000..000003}.tar"), train=True, batch_size=2, steps=1)
    dm = ShardDataModule(train_shards=str(tmp_path / "gone.tar"), num_workers=0)
    with pytest.raises(FileNotFoundError, match="gone.tar"):
        dm.setup("fit")


def test_stats_counts_bad_samples(messy):
    s = shard_stats(str(messy / "*.tar"), progress=False)
    assert s["samples"] == 9 and s["skipped"] == 3
    assert s["skipped_reasons"] == {"bad_image": 1, "no_caption": 2}
    assert {"CMYK", "I;16", "P", "LA", "RGBA", "L", "RGB"} <= set(s["image_modes"])
    assert s["image_width"]["max"] == 300 and s["image_height"]["min"] == 20


def test_stats_cli_json(messy):
    out = subprocess.run([sys.executable, "-m", "argen.data", "stats", str(messy / "*.tar"), "--json", "--quiet"],
                         capture_output=True, text=True, timeout=120, check=True)
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert last["samples"] == 9 and last["skipped"] == 3 and last["skipped_reasons"]["no_caption"] == 2


def test_messy_shards_through_the_data_module(messy):
    dm = ShardDataModule(train_shards=str(messy / "*.tar"), val_shards=str(messy / "{00000..00001}.tar"),
                         batch_size=4, num_workers=0, image_size=24, steps_per_epoch=3, shuffle_buffer=10)
    dm.setup("fit")
    val = list(dm.val_dataloader())
    assert [len(b["key"]) for b in val] == [4, 4, 1]
    keys = [k for b in val for k in b["key"]]
    assert not any(k.endswith(("corrupt", "nocaption", "emptycaption")) for k in keys)
    for b in val:
        assert b["image"].shape[1:] == (3, 24, 24) and b["image"].dtype == torch.float32
        assert 0.0 <= b["image"].min() and b["image"].max() <= 1.0
        assert "text_ids" not in b  # no tokenizer given
    rgba = {k: img for b in val for k, img in zip(b["key"], b["image"])}["0003_rgba_png"]
    assert torch.allclose(rgba[:, 0, 0], torch.ones(3))  # transparent -> white
    assert torch.allclose(rgba[:, 12, 12], torch.tensor([1.0, 0.0, 0.0]), atol=0.02)
    train = list(dm.train_dataloader())
    assert len(train) == 3 and all(len(b["key"]) == 4 for b in train)


def test_round_trip_write_read(tmp_path):
    rows = list(shapes.samples("val", 30, size=32, seed=5))
    written = write_shards(iter(rows), tmp_path, "val", per_shard=7, progress=False)
    assert [p.name for p in written] == [f"val-{i:06d}.tar" for i in range(5)]
    with tarfile.open(written[0]) as t:
        assert sorted(t.getnames())[:3] == ["000000000.json", "000000000.png", "000000000.txt"]
    loader = make_loader(str(tmp_path / "val-*.tar"), train=False, batch_size=8, image_size=32)
    batches = list(loader)
    assert [k for b in batches for k in b["key"]] == [r["__key__"] for r in rows]  # fixed order
    assert [c for b in batches for c in b["caption"]] == [r["txt"] for r in rows]
    first = np.asarray(Image.open(io.BytesIO(rows[0]["png"])), dtype=np.float32) / 255
    assert torch.allclose(batches[0]["image"][0], torch.from_numpy(first).permute(2, 0, 1))
    assert len(list(make_loader(str(tmp_path / "val-*.tar"), train=False, batch_size=8, steps=2))) == 2


def test_urls(messy):
    loader = make_loader(f"pipe:cat {messy}/00001.tar", train=False, batch_size=10, image_size=16)
    (batch,) = list(loader)
    assert len(batch["key"]) == 3  # 6 samples, 3 bad
    import fsspec  # schemes webdataset does not open itself go through fsspec

    with fsspec.open("memory://argen-test/00000.tar", "wb") as f:
        f.write((messy / "00000.tar").read_bytes())
    (batch,) = list(make_loader("memory://argen-test/00000.tar", train=False, batch_size=10, image_size=16))
    assert len(batch["key"]) == 6
    with pytest.raises(ValueError, match="nosuch://"):
        expand_shards("nosuch://bucket/a.tar")


def test_too_many_bad_samples_stop_the_stream(tmp_path):
    good = encoded(Image.new("RGB", (8, 8)), "PNG")
    with wds.TarWriter(str(tmp_path / "bad.tar")) as sink:
        for i in range(150):
            sink.write({"__key__": f"{i:04d}", "txt": "x", "png": good if i % 2 else b"broken"})
    spec = str(tmp_path / "bad.tar")
    with pytest.raises(BadDataError, match="max_bad_fraction=0.2.*bad_image"):
        list(make_loader(spec, train=False, batch_size=4, image_size=8))
    with pytest.raises(BadDataError, match="bad_image"):  # raised in a worker, reported here
        list(make_loader(spec, train=False, batch_size=4, image_size=8, num_workers=1))
    batches = list(make_loader(spec, train=False, batch_size=5, image_size=8, max_bad_fraction=0.6))
    assert sum(len(b["key"]) for b in batches) == 75


def test_truncated_tar_is_counted_not_fatal(tmp_path):
    grid_shards(tmp_path, n_shards=1, per=20)
    data = (tmp_path / "g-00.tar").read_bytes()
    (tmp_path / "g-00.tar").write_bytes(data[: len(data) // 2])
    s = shard_stats(str(tmp_path / "g-00.tar"), progress=False)
    assert 0 < s["samples"] < 20 and s["skipped_reasons"].get("tar_error") == 1


def test_ranks_and_workers_read_disjoint_shards_and_equal_steps(tmp_path, monkeypatch):
    spec = grid_shards(tmp_path)
    seen = {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))  # how webdataset 1.0 learns the rank without a process group
        monkeypatch.setenv("WORLD_SIZE", "2")
        loader = make_loader(spec, train=True, batch_size=3, num_workers=2, steps=8, image_size=8, shuffle_buffer=4)
        batches = list(loader)
        assert len(batches) == len(loader) == 8  # every rank: the same number of steps
        for i, b in enumerate(batches):  # the DataLoader takes batches from its workers in turn
            seen.setdefault((rank, i % 2), set()).update(k.split("-")[0] for k in b["key"])
    assert len(seen) == 4
    readers = list(seen.values())
    assert all(len(r) == 2 for r in readers)  # 8 shards / (2 ranks x 2 workers)
    assert len(set().union(*readers)) == 8  # pairwise disjoint, all shards covered


def test_training_stream_is_seeded_and_moves_on_each_epoch(tmp_path):
    spec = grid_shards(tmp_path)
    loader = make_loader(spec, train=True, batch_size=4, steps=3, image_size=8, seed=7)
    first = [k for b in loader for k in b["key"]]
    second = [k for b in loader for k in b["key"]]
    assert first != second
    again = make_loader(spec, train=True, batch_size=4, steps=3, image_size=8, seed=7)
    assert [k for b in again for k in b["key"]] == first
    other = make_loader(spec, train=True, batch_size=4, steps=3, image_size=8, seed=8)
    assert [k for b in other for k in b["key"]] != first


def test_shards_without_samples_fail_clearly(tmp_path):
    with wds.TarWriter(str(tmp_path / "empty.tar")):
        pass
    with pytest.raises(BadDataError, match="hold no samples"):
        next(iter(make_loader(str(tmp_path / "empty.tar"), train=True, batch_size=2, steps=2)))


def test_pretokenized_and_svg_samples(tmp_path):
    extra = {"tok.npy": np.arange(16, dtype=np.int16), "svg": "<svg xmlns='http://www.w3.org/2000/svg'/>"}
    spec = grid_shards(tmp_path, n_shards=2, per=4, extra=extra)
    (b,) = list(make_loader(spec, train=False, batch_size=8, load_image=False, load_svg=True))
    assert b["tokens"].dtype == torch.long and b["tokens"].shape == (8, 16)
    assert b["tokens"][0].tolist() == list(range(16))
    assert b["svg"][0].startswith("<svg") and "image" not in b
    plain = tmp_path / "plain"
    plain.mkdir()
    s = shard_stats(grid_shards(plain, n_shards=1, per=4), progress=False)
    assert s["svgs"] == 0 and s["samples"] == 4
    assert list(make_loader(str(plain / "*.tar"), train=False, batch_size=8, load_svg=True,
                            max_bad_fraction=1.0)) == []  # every sample skipped as no_svg


# -- the data module --------------------------------------------------------------------------------
def test_prepare_recipe_is_checked(shapes_dir, tmp_path):
    marker = json.loads((shapes_dir / "prepare.json").read_text())
    assert marker["train"] == 96 and marker["dataset"] == "shapes"
    prepare_recipe({"dataset": "shapes", "out": str(shapes_dir), "train": 96, "val": 20, "size": 32})  # no-op
    with pytest.raises(ValueError, match="another recipe"):
        prepare_recipe({"dataset": "shapes", "out": str(shapes_dir), "train": 97, "val": 20, "size": 32})
    moved = tmp_path / "moved"
    shutil.copytree(shapes_dir, moved)
    before = {p.name: p.stat().st_mtime_ns for p in moved.glob("*.tar")}
    prepare_recipe({"dataset": "shapes", "out": str(moved), "train": 96, "val": 20, "size": 32})  # recognised
    assert {p.name: p.stat().st_mtime_ns for p in moved.glob("*.tar")} == before  # not written again
    with pytest.raises(ValueError, match="unknown keys.*colour"):
        prepare_recipe({"dataset": "shapes", "out": str(tmp_path), "colour": "red"})
    with pytest.raises(ValueError, match="dataset"):
        ShardDataModule(prepare={"dataset": "cifar", "out": str(tmp_path)})


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)
        self.val_samples = []

    def training_step(self, batch, _):
        assert batch["text_ids"].shape == batch["text_mask"].shape
        return self.lin(batch["image"].mean((2, 3))).pow(2).mean()

    def validation_step(self, batch, _):
        self.val_samples.append(len(batch["key"]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_data_module_under_lightning(tmp_path):
    dm = ShardDataModule(prepare={"dataset": "shapes", "out": str(tmp_path / "s"), "train": 64, "val": 16,
                                  "size": 32, "vocab_size": 64},
                         image_size=32, batch_size=8, num_workers=1, steps_per_epoch=3, max_text_len=24)
    model = Tiny()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 6
    assert sum(model.val_samples) == 2 * 16
    tok_file = tmp_path / "s" / "tokenizer.json"
    assert Tokenizer.from_file(str(tok_file)).get_vocab_size() == dm.text_vocab_size <= 64


def test_text_vocab_size_prepares_on_demand(tmp_path):
    dm = ShardDataModule(prepare={"dataset": "shapes", "out": str(tmp_path), "train": 40, "val": 8, "size": 32},
                         num_workers=0)
    assert dm.text_vocab_size > 20  # as LightningCLI's link_arguments would ask, before prepare_data
    assert (tmp_path / "tokenizer.json").is_file() and (tmp_path / "prepare.json").is_file()


def test_data_module_from_config(shapes_dir):
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(ShardDataModule, "data")
    cfg = parser.parse_args([f"--data.train_shards=[{shapes_dir}/train-000000.tar, {shapes_dir}/train-000001.tar]",
                             f"--data.val_shards={shapes_dir}/val-*.tar", "--data.batch_size=5",
                             "--data.num_workers=0", "--data.image_size=16"])
    dm = parser.instantiate(cfg).data
    assert isinstance(dm, ShardDataModule) and dm.batch_size == 5
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (5, 3, 16, 16)
    assert {k.split("-")[0] for k in batch["key"]} <= {f"{i:09d}" for i in range(96)}
    cfg = parser.parse_args([f"--data.prepare={{dataset: shapes, out: {shapes_dir}, train: 96, val: 20}}"])
    dm = parser.instantiate(cfg).data
    assert dm.recipe["size"] == 32 and dm.train_shards == f"{shapes_dir}/train-*.tar"
    with pytest.raises(ValueError, match="batch_size"):
        ShardDataModule(batch_size=0)
