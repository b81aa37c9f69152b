"""``argen.eval emoji``: does a text->image model on the emoji shards draw the asked-for kind of emoji
in the asked-for vendor's style, for (concept, vendor) pairs it never saw?

The held-out pairs (``heldout.tsv`` beside the shards, see :mod:`argen.data.emoji`) name a concept
that was trained in other vendors' styles but never in this one. Every pair's prompt is sampled,
and the samples are read back by a **probe trained on real training images only**: a small CNN
with one head for the vendor and one for the emoji category. Three rows frame its scores:

- **ceiling**: the probe on the real held-out images of the same pairs (what a perfect model
  would score; a probe that cannot tell the vendors apart on real images cannot judge samples);
- **floor**: the samples scored against the labels of shuffled prompts (the mean over
  ``FLOOR_PERMUTATIONS`` permutations), i.e. what a model that ignores the prompt would score;
- **FID** of the samples against the real held-out images, beside the FID of real training images
  against the same set (the real-vs-real value at this sample count).

Why a CNN and not logistic regression on Inception features: Inception at 299 px costs ~0.4 s per
image on a 2-core CPU, so a probe on all ~10,000 training images would take over an hour; the
CNN reads the 64 px pixels and trains in minutes (``--probe inception-linear`` runs the linear
probe on a subsample instead). Figures: docs/eval.md.
"""

from __future__ import annotations

import json
import random
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torch import nn
from tqdm import tqdm

from argen.data.emoji import VENDORS, read_heldout_tsv
from argen.data.shards import SampleDecoder, ShardStream, expand_shards
from argen.eval import check_generator
from argen.eval.cache import Cache
from argen.eval.fid import FID, fid_kid
from argen.eval.report import Report, sampling_text
from argen.generator import Generator

FLOOR_PERMUTATIONS = 200
GRID_PROMPTS = 16
PROBES = ("cnn", "inception-linear")
# The CNN probe's size and schedule, chosen with benchmarks/emoji_probe.py: a smaller probe's vendor
# ceiling on real held-out images fell short of what a judge of samples needs (BENCHMARKS.md, *Emoji*).
PROBE_WIDTH = 48
PROBE_EPOCHS = 12


# -- data -----------------------------------------------------------------------------------------
def training_shards_of(export: str | Path) -> list[str]:
    """The training shards named in the ``config.yaml`` LightningCLI saved beside ``export``."""
    config = Path(export).resolve().parent / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"no {config} (the training config saved beside the export); pass --shards")
    data = (yaml.safe_load(config.read_text()) or {}).get("data", {})
    shards = (data.get("init_args") or data).get("train_shards")
    if not shards:
        raise ValueError(f"{config} names no data.init_args.train_shards; pass --shards")
    return [shards] if isinstance(shards, str) else list(shards)


def read_real(shards: str | Sequence[str], size: int, progress: bool = False) -> list[dict[str, Any]]:
    """Every sample of local emoji shards as ``{key, image (H, W, 3) uint8, caption, vendor, category, …}``."""
    urls = expand_shards(shards)
    meta = _read_meta(urls)  # the sample decoder does not keep KEY.json
    stream = ShardStream(urls, SampleDecoder(size), max_bad_fraction=0.2)
    out = [{"key": s["key"], "image": s["image"], "caption": s["caption"], **meta.get(s["key"], {})}
           for s in tqdm(stream, desc="real images", unit=" images", disable=not progress)]
    if not out:
        raise ValueError(f"no images in {shards}")
    missing = [r["key"] for r in out if "vendor" not in r or "category" not in r]
    if missing:
        raise ValueError(f"{len(missing)} samples (e.g. {missing[0]}) have no vendor/category in KEY.json: "
                         "are these emoji shards (python -m argen.data prepare emoji)?")
    return out


def _read_meta(urls: list[str]) -> dict[str, dict]:
    """``{key: KEY.json}`` of local shard files."""
    meta = {}
    for url in urls:
        with tarfile.open(url) as tar:
            for m in tar:
                if m.isfile() and m.name.endswith(".json"):
                    meta[m.name[: -len(".json")]] = json.loads(tar.extractfile(m).read())
    return meta


# -- the probe ------------------------------------------------------------------------------------
class ProbeCNN(nn.Module):
    """64 px RGB -> (vendor logits, category logits): four strided 3×3 conv layers with BatchNorm, a
    global average pool and two linear heads. Small enough to train on ~10k images in minutes on CPU."""

    def __init__(self, n_vendors: int, n_categories: int, width: int = PROBE_WIDTH):
        super().__init__()
        w = width
        layers, cin = [], 3
        for cout in (w, 2 * w, 4 * w, 4 * w):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            cin = cout
        self.trunk = nn.Sequential(*layers)
        self.vendor = nn.Linear(cin, n_vendors)
        self.category = nn.Linear(cin, n_categories)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x).mean(dim=(2, 3))
        return self.vendor(h), self.category(h)


def _to_input(images: np.ndarray | torch.Tensor, size: int = 64) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


class Probe:
    """Vendor and category classifiers trained on real images (``fit``), applied to any (``predict``)."""

    def __init__(self, vendors: Sequence[str], categories: Sequence[str], kind: str = "cnn", seed: int = 0,
                 epochs: int = PROBE_EPOCHS, fid=None, width: int = PROBE_WIDTH):
        if kind not in PROBES:
            raise ValueError(f"probe must be one of {PROBES}, got {kind!r}")
        self.vendors, self.categories = list(vendors), list(categories)
        self.kind, self.seed, self.epochs, self.fid, self.width = kind, seed, epochs, fid, width
        self.train_accuracy: dict[str, float] = {}

    def state(self) -> dict[str, torch.Tensor]:
        if self.kind == "cnn":
            return {f"net.{k}": v for k, v in self.net.state_dict().items()}
        return {"mean": self.mean, "std": self.std, **{f"head{i}.{k}": v for i, h in enumerate(self.heads)
                                                       for k, v in h.state_dict().items()}}

    def load_state(self, state: dict[str, torch.Tensor]) -> Probe:
        if self.kind == "cnn":
            self.net = ProbeCNN(len(self.vendors), len(self.categories), self.width)
            self.net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
            self.net.eval()
        else:
            self.mean, self.std = state["mean"], state["std"]
            self.heads = []
            for i, n in enumerate((len(self.vendors), len(self.categories))):
                head = nn.Linear(self.mean.shape[0], n)
                head.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(f"head{i}.")})
                self.heads.append(head.eval())
        self.train_accuracy = {"vendor": float(state["train_accuracy"][0]),
                               "category": float(state["train_accuracy"][1])}
        return self

    def _labels(self, rows) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.tensor([self.vendors.index(r["vendor"]) for r in rows]),
                torch.tensor([self.categories.index(r["category"]) for r in rows]))

    def fit(self, rows: list[dict], max_images: int | None = None, progress: bool = False) -> Probe:
        rng = random.Random(self.seed)
        rows = sorted(rows, key=lambda r: r["key"])
        rng.shuffle(rows)
        if max_images:
            rows = rows[:max_images]
        yv, yc = self._labels(rows)
        if self.kind == "cnn":
            self._fit_cnn(np.stack([r["image"] for r in rows]), yv, yc, progress)
        else:
            feats = self.fid.features(_pixels(rows), progress, "probe features")
            self.mean, self.std = feats.mean(0), feats.std(0).clamp_min(1e-6)
            z = ((feats - self.mean) / self.std).float()
            self.heads = [_fit_linear(z, y, n) for y, n in ((yv, len(self.vendors)), (yc, len(self.categories)))]
        pv, pc = self.predict(np.stack([r["image"] for r in rows[:2000]]))
        self.train_accuracy = {"vendor": float((pv == yv[:2000]).float().mean()),
                               "category": float((pc == yc[:2000]).float().mean())}
        return self

    def _fit_cnn(self, images: np.ndarray, yv: torch.Tensor, yc: torch.Tensor, progress: bool) -> None:
        torch.manual_seed(self.seed)
        self.net = ProbeCNN(len(self.vendors), len(self.categories), self.width)
        opt = torch.optim.AdamW(self.net.parameters(), lr=3e-3, weight_decay=1e-4)
        n, bs = len(images), 64
        steps = self.epochs * ((n + bs - 1) // bs)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
        g = torch.Generator().manual_seed(self.seed)
        self.net.train()
        bar = tqdm(total=steps, desc="probe", unit="step", disable=not progress)
        for _ in range(self.epochs):
            for idx in torch.randperm(n, generator=g).split(bs):
                x = _to_input(images[idx.numpy()])
                if torch.rand((), generator=g) < 0.5:
                    x = x.flip(-1)  # mirror images are the same vendor and category
                lv, lc = self.net(x)
                loss = F.cross_entropy(lv, yv[idx]) + F.cross_entropy(lc, yc[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
        bar.close()
        self.net.eval()

    @torch.no_grad()
    def predict(self, images: np.ndarray | list) -> tuple[torch.Tensor, torch.Tensor]:
        """(vendor indices, category indices) for (N, H, W, 3) uint8 images or PIL images."""
        images = np.stack([np.asarray(im.convert("RGB")) if hasattr(im, "convert") else im for im in images])
        if self.kind == "cnn":  # trained on mirrored copies under the same labels: read both, add them
            out = [[a + b for a, b in zip(self.net(x), self.net(x.flip(-1)), strict=True)]
                   for x in (_to_input(images[i:i + 256]) for i in range(0, len(images), 256))]
            return torch.cat([o[0] for o in out]).argmax(1), torch.cat([o[1] for o in out]).argmax(1)
        feats = self.fid.features(torch.from_numpy(images).permute(0, 3, 1, 2))
        z = ((feats - self.mean) / self.std).float()
        return tuple(head(z).argmax(1) for head in self.heads)


def _fit_linear(x: torch.Tensor, y: torch.Tensor, n_classes: int, weight_decay: float = 1e-3) -> nn.Linear:
    """Multinomial logistic regression (L2-regularised) by full-batch L-BFGS."""
    torch.manual_seed(0)
    head = nn.Linear(x.shape[1], n_classes)
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(x), y) + weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head.eval()


# -- scores ---------------------------------------------------------------------------------------
def shuffled_floor(pred: torch.Tensor, labels: torch.Tensor, permutations: int = FLOOR_PERMUTATIONS,
                   seed: int = 0) -> float:
    """Accuracy of ``pred`` against the labels of shuffled prompts, averaged over permutations."""
    g = torch.Generator().manual_seed(seed)
    return float(np.mean([(pred == labels[torch.randperm(len(labels), generator=g)]).float().mean().item()
                          for _ in range(permutations)]))


def per_group(rows: list[dict], pred_v: torch.Tensor, pred_c: torch.Tensor, yv: torch.Tensor, yc: torch.Tensor,
              key: str) -> list[dict]:
    out = []
    for name in sorted({r[key] for r in rows}):
        idx = torch.tensor([i for i, r in enumerate(rows) if r[key] == name])
        out.append({key: name, "pairs": len(idx), "vendor_accuracy": float((pred_v[idx] == yv[idx]).float().mean()),
                    "category_accuracy": float((pred_c[idx] == yc[idx]).float().mean())})
    return out


def grid_pairs(pairs: list[dict], n: int = GRID_PROMPTS) -> list[int]:
    """``n`` fixed pair indices spread over the (vendor, concept)-sorted list, so every vendor shows."""
    order = sorted(range(len(pairs)), key=lambda i: (pairs[i]["vendor"], pairs[i]["key"]))
    if len(order) <= n:
        return order
    return [order[int(round(x))] for x in np.linspace(0, len(order) - 1, n)]


def references(train: list[dict], real_pairs: list[dict], vendors: list[str], categories: list[str], fid,
               store: Cache, probe: str = "cnn", seed: int = 0, probe_epochs: int = PROBE_EPOCHS,
               probe_images: int | None = None, fid_reference: int = 300, progress: bool = False):
    """``(probe, held-out features, reference features)``: the probe trained on ``train``, the FID
    features of the real held-out images and of ``fid_reference`` random training images, through
    ``store`` (trained or extracted once, then read back)."""
    clf = Probe(vendors, categories, probe, seed, probe_epochs, fid)
    # Training is deterministic for a given thread count only (the sums' order changes with it), so a
    # probe trained on 2 threads is not read back by a run on 1: the cache returns what training would.
    probe_key = store.key(probe, seed, probe_epochs, clf.width, probe_images, vendors, categories,
                          fid.name if probe != "cnn" else None, list(train[0]["image"].shape),
                          torch.get_num_threads(), sorted(r["key"] for r in train))
    state = store.load("emoji-probe", probe_key)
    if state is not None:
        clf.load_state(state)
    else:
        clf.fit(train, probe_images, progress)
        store.save("emoji-probe", probe_key, {**clf.state(), "train_accuracy": torch.tensor(
            [clf.train_accuracy["vendor"], clf.train_accuracy["category"]])})
    f_real = store.features(fid, _pixels(real_pairs), "emoji-heldout", progress)
    ordered = sorted(train, key=lambda r: r["key"])  # the same choice whatever order the shards are read in
    ref_rows = random.Random(seed).sample(ordered, min(fid_reference, len(train)))
    return clf, f_real, store.features(fid, _pixels(ref_rows), "emoji-reference", progress)


def evaluate_emoji(export: str | Path, out: str | Path, shards: str | Sequence[str] | None = None,
                   pairs: str | Path | None = None, num_samples: int = 2, probe: str = "cnn",
                   probe_epochs: int | None = None, probe_images: int | None = None, fid_reference: int = 300,
                   seed: int = 0, batch_size: int = 64, device: str = "cpu", features: str = "auto",
                   inception_weights: str | None = None, cell: int = 96, wandb: bool = False,
                   progress: bool = True, cache: str | Path | None | bool = None) -> dict[str, Any]:
    """Sample the held-out pairs of an emoji generator export, score them, write the report to ``out``.

    ``cache`` keeps the probe and the real images' features between runs (:mod:`argen.eval.cache`;
    ``False``: none): they depend on the data, not on the model, and are most of the cost on a CPU.
    ``probe_epochs``: None for ``PROBE_EPOCHS``."""
    check_generator(export, "image_tokenizer", "emoji")
    probe_epochs = PROBE_EPOCHS if probe_epochs is None else probe_epochs
    if num_samples < 1:
        raise ValueError(f"num_samples must be ≥ 1, got {num_samples}")
    train_spec = list(shards) if shards else training_shards_of(export)
    if isinstance(shards, str):
        train_spec = [shards]
    train_urls = expand_shards(train_spec)
    folder = Path(train_urls[0]).parent
    pairs_path = Path(pairs) if pairs else next(
        (p for p in (folder / "heldout.tsv", Path("eval/emoji-heldout.tsv")) if p.is_file()), folder / "heldout.tsv")
    if not pairs_path.is_file():
        raise FileNotFoundError(f"no held-out pairs at {pairs_path}; pass --pairs (e.g. eval/emoji-heldout.tsv)")
    heldout_urls = expand_shards(str(folder / "heldout-*.tar"))
    pair_rows = read_heldout_tsv(pairs_path)

    fid = FID(features, inception_weights, device)
    gen = Generator.from_pretrained(export, device=device)
    size = gen.target.tokenizer.image_size
    train = read_real(train_urls, size, progress)
    held = {r["key"]: r for r in read_real(heldout_urls, size, progress)}
    missing = [p["key"] for p in pair_rows if p["key"] not in held]
    if missing:
        raise ValueError(f"{len(missing)} held-out pairs (e.g. {missing[0]}) have no image in {folder}/heldout-*.tar; "
                         "were the pairs and the shards prepared together?")
    vendors = [v for v in VENDORS if any(r["vendor"] == v for r in train)]
    categories = sorted({r["category"] for r in train})
    unknown = sorted({p["vendor"] for p in pair_rows} - set(vendors)) + \
        sorted({p["category"] for p in pair_rows} - set(categories))
    if unknown:
        raise ValueError(f"held-out pairs name vendors/categories the training shards lack: {unknown}")

    report = Report(out, f"argen eval emoji: {export}", {
        "subcommand": "emoji", "export": str(export), "training_shards": len(train_urls), "pairs": str(pairs_path),
        "num_pairs": len(pair_rows), "num_samples": num_samples, "probe": probe, "probe_epochs": probe_epochs,
        "seed": seed, "sampling": gen.sampling.to_dict(), "fid_features": fid.name}, wandb)

    # -- probe (real training images only) and real features: cached, they do not depend on the model
    store = Cache(cache)
    real_pairs = [held[p["key"]] for p in pair_rows]
    clf, f_real, f_ref = references(train, real_pairs, vendors, categories, fid, store, probe, seed, probe_epochs,
                                    probe_images, fid_reference, progress)
    yv = torch.tensor([vendors.index(p["vendor"]) for p in pair_rows])
    yc = torch.tensor([categories.index(p["category"]) for p in pair_rows])
    cv, cc = clf.predict(np.stack([r["image"] for r in real_pairs]))
    # The same images through the export's own image tokenizer: the best its samples could look.
    rv, rc = clf.predict(gen.target.batch_decode(gen.target.tokenizer.encode([_pil(r["image"]) for r in real_pairs])))

    # -- samples of the held-out prompts ----------------------------------------------------------
    prompts = [p["prompt"] for p in pair_rows]
    outputs = gen.generate(prompts, num_samples=num_samples, seed=seed, batch_size=batch_size, progress=progress)
    fakes = [img for per in outputs for img in per]
    sv, sc = clf.predict(fakes)
    yv_s, yc_s = yv.repeat_interleave(num_samples), yc.repeat_interleave(num_samples)

    # -- FID against the real held-out images, with a real-vs-real reference ---------------------
    f_fake = fid.features(fakes, progress, "sample features")
    fid_gen, fid_ref = fid_kid(f_real, f_fake, seed=seed), fid_kid(f_real, f_ref, seed=seed)

    acc = lambda p, y: float((p == y).float().mean())  # noqa: E731
    m: dict[str, Any] = {
        "vendor_accuracy": acc(sv, yv_s), "category_accuracy": acc(sc, yc_s),
        "vendor_floor": shuffled_floor(sv, yv_s, seed=seed), "category_floor": shuffled_floor(sc, yc_s, seed=seed),
        "vendor_ceiling": acc(cv, yv), "category_ceiling": acc(cc, yc),
        "vendor_tokenizer_ceiling": acc(rv, yv), "category_tokenizer_ceiling": acc(rc, yc),
        "fid": fid_gen["fid"], "kid": fid_gen["kid_mean"], "fid_features": fid.name,
        "fid_real_vs_real": fid_ref["fid"], "kid_real_vs_real": fid_ref["kid_mean"],
        "pairs": len(pair_rows), "samples": len(fakes), "probe": probe,
        "probe_train_accuracy": clf.train_accuracy,
        "probe_training_images": min(len(train), probe_images or len(train)),
        "vendors": vendors, "categories": categories,
    }
    samples_rows = [dict(p, sample=j) for p in pair_rows for j in range(num_samples)]
    m["per_vendor"] = per_group(samples_rows, sv, sc, yv_s, yc_s, "vendor")
    m["per_category"] = per_group(samples_rows, sv, sc, yv_s, yc_s, "category")
    m["goals"] = {"category": m["category_accuracy"] >= 0.5 and m["category_accuracy"] >= 2 * m["category_floor"],
                  "vendor": m["vendor_accuracy"] >= 0.75 and m["vendor_accuracy"] >= 2 * m["vendor_floor"],
                  "vendor_ceiling": m["vendor_ceiling"] >= 0.95}
    report.metrics = m

    pct = dict(percent=True)
    report.summary("vendor accuracy", m["vendor_accuracy"],
                   f"floor {100 * m['vendor_floor']:.1f}%, ceiling {100 * m['vendor_ceiling']:.1f}%", **pct)
    report.summary("category accuracy", m["category_accuracy"],
                   f"floor {100 * m['category_floor']:.1f}%, ceiling {100 * m['category_ceiling']:.1f}%", **pct)
    report.summary("FID vs real held-out", m["fid"], f"{fid.name}; real training vs held-out: {fid_ref['fid']:.4g}")
    report.section("Held-out (concept, vendor) pairs", f"""
{len(pair_rows)} pairs from `{pairs_path}`: each concept was trained in other vendors' styles, never
in this one. {num_samples} samples per prompt at the export's default sampling
({sampling_text(gen.sampling.to_dict())}), seed {seed}. The probe ({probe}) was trained on
{m['probe_training_images']} real training images (accuracy there: vendor
{100 * clf.train_accuracy['vendor']:.1f}%, category {100 * clf.train_accuracy['category']:.1f}%).
**Ceiling**: the probe on the real images of the held-out pairs. **Tokenizer ceiling**: the probe on
the same images encoded and decoded by the export's image tokenizer (what the samples could at best
show: detail the tokens cannot carry is lost to the probe too).
**Floor**: the samples against the labels of shuffled prompts (mean of {FLOOR_PERMUTATIONS}
permutations).""")
    report.table("accuracy", [
        {"set": "samples", "vendor": m["vendor_accuracy"], "category": m["category_accuracy"]},
        {"set": "floor (shuffled prompts)", "vendor": m["vendor_floor"], "category": m["category_floor"]},
        {"set": "ceiling (real held-out images)", "vendor": m["vendor_ceiling"], "category": m["category_ceiling"]},
        {"set": "tokenizer ceiling (real images, tokenized)", "vendor": m["vendor_tokenizer_ceiling"],
         "category": m["category_tokenizer_ceiling"]},
    ], percent=("vendor", "category"))
    report.table("per_vendor", m["per_vendor"], percent=("vendor_accuracy", "category_accuracy"))
    report.table("per_category", m["per_category"], percent=("vendor_accuracy", "category_accuracy"))
    report.section("FID / KID", f"""
Samples ({len(fakes)}) and {fid_reference} random real training images, each against the
{len(real_pairs)} real held-out images; features **{fid.name}**. The reference row is what real
images of other concepts score at these sample counts.""")
    report.table("fid", [{"set": "samples", "n": fid_gen["n_fake"], "FID": fid_gen["fid"], "KID": fid_gen["kid_mean"]},
                         {"set": "real training images (reference)", "n": fid_ref["n_fake"], "FID": fid_ref["fid"],
                          "KID": fid_ref["kid_mean"]}])
    shown = grid_pairs(pair_rows)
    images, caps = [], []
    for i in shown:
        k = i * num_samples
        images += [outputs[i][0], _pil(held[pair_rows[i]["key"]]["image"])]
        ok = ("v" if sv[k] == yv[i] else "-") + ("c" if sc[k] == yc[i] else "-")
        caps += [f"[{ok}] {prompts[i]}", "real (never trained)"]
    report.grid("heldout-samples", images, caps, f"{len(shown)} fixed held-out prompts: sample (left, [v]endor and "
                "[c]ategory read correctly by the probe) and the real image never trained on (right)",
                ncol=8, cell=cell, caption_lines=3)
    report.write()
    _headline_on_top(Path(out) / "metrics.json", m)
    return m


HEADLINE = ("vendor_accuracy", "category_accuracy", "vendor_floor", "category_floor", "vendor_ceiling",
            "category_ceiling", "fid", "fid_features", "fid_real_vs_real")


def _headline_on_top(path: Path, metrics: dict) -> None:
    """Repeat the headline numbers at the top level of metrics.json (beside config/metrics/run), where
    dashboards and the issue's checks read them without knowing the report's nesting."""
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**{k: metrics[k] for k in HEADLINE}, **doc}, indent=2) + "\n")


def _pixels(rows: list[dict]) -> torch.Tensor:
    """The rows' (H, W, 3) uint8 images as one (N, 3, H, W) tensor, as the feature extractors take them."""
    return torch.from_numpy(np.stack([r["image"] for r in rows])).permute(0, 3, 1, 2)


def _pil(a: np.ndarray):
    return Image.fromarray(a)
