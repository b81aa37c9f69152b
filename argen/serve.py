"""``python -m argen.serve EXPORT [EXPORT ...] [--host 127.0.0.1] [--port 7860]``: a demo page.

A Gradio page (and its client API) for trained exports, image or SVG: type a prompt, set samples,
guidance, temperature, top-k / top-p and a seed, watch the sample being decoded, download the
results; for SVG models, continue a drawing or redraw one of its paths. Requests from many users
share ``generate`` calls (:mod:`argen.batcher`). The page is offline by construction: no analytics,
no web fonts or CDN assets, and it binds to 127.0.0.1 unless ``--host`` says otherwise.

Everything a user sends is checked here first (:func:`check_number`, :func:`check_prompt`, the SVG
parser) and answered with a message naming what is wrong; user text is escaped wherever it is shown.
Needs the ``demo`` extra: ``pip install -e ".[demo]"``. Docs: docs/serve.md.
"""

from __future__ import annotations

import os

# Before gradio and torch load. Gradio would post usage analytics and ask its server for the latest
# version; huggingface_hub (a gradio dependency) has telemetry of its own.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the other CLIs: a shared CPU box

import argparse  # noqa: E402
import base64  # noqa: E402
import html  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from argen.batcher import Batcher, Busy, Request  # noqa: E402
from argen.generator import Generator  # noqa: E402
from argen.grid import image_grid  # noqa: E402
from argen.svg.errors import SVGError  # noqa: E402

BUSY = "busy, try again in a moment"
SEED_MAX = 2**31 - 1
SYSTEM_FONTS = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]


class BadInput(ValueError):
    """A request the page refuses, with the message the user sees."""


@dataclass
class Limits:
    """Per-request limits, from the command line."""

    max_samples: int = 8
    max_prompt_chars: int = 300
    max_svg_bytes: int = 200_000
    max_guidance: float = 20.0
    max_temperature: float = 5.0
    preview_s: float = 0.5  # seconds between progressive previews of one model; 0: none


# -- checking what users send ---------------------------------------------------------------------
def check_number(name: str, value, lo: float, hi: float, integer: bool = False) -> float | int:
    """``value`` as a finite number in ``[lo, hi]`` (a whole number if ``integer``), or :class:`BadInput`."""
    if value is None or isinstance(value, bool):
        raise BadInput(f"{name} is missing: give a number between {lo:g} and {hi:g}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise BadInput(f"{name} must be a number, got {value[:40]!r}") from None
    if not isinstance(value, (int, float)):
        raise BadInput(f"{name} must be a number, got a {type(value).__name__}")
    if not math.isfinite(value):
        raise BadInput(f"{name} must be a finite number, got {value}")
    if not lo <= value <= hi:
        raise BadInput(f"{name} must be between {lo:g} and {hi:g}, got {value:g}")
    if integer:
        if float(value) != int(value):
            raise BadInput(f"{name} must be a whole number, got {value:g}")
        return int(value)
    return float(value)


def check_prompt(prompt, limits: Limits) -> str:
    if not isinstance(prompt, str):
        raise BadInput(f"the prompt must be text, got a {type(prompt).__name__}")
    prompt = prompt.strip()
    if not prompt:
        raise BadInput("the prompt is empty: describe what to draw (e.g. \"a red circle\")")
    if len(prompt) > limits.max_prompt_chars:
        raise BadInput(f"the prompt has {len(prompt):,} characters; this server takes at most "
                       f"{limits.max_prompt_chars:,}")
    return prompt


def prompt_notes(gen: Generator, prompt: str) -> list[str]:
    """What the model will not read of a prompt: unknown characters, and tokens past its window."""
    enc = gen.text_tokenizer.tokenizer.encode(prompt)
    unknown = [prompt[a:b] for i, (a, b) in zip(enc.ids, enc.offsets) if i == gen.text_tokenizer.unk_id]
    notes = []
    if unknown:
        shown = ", ".join(repr(u) for u in dict.fromkeys(unknown))
        notes.append(f"not in this model's vocabulary (read as unknown): {shown[:200]}")
    window = gen.net.config.max_text_len
    if len(enc.ids) > window:
        notes.append(f"the prompt is {len(enc.ids)} tokens; this model reads the first {window}")
    return notes


def sampling_args(gen: Generator, guidance, temperature, top_k, top_p, limits: Limits) -> dict:
    """Checked sampling settings. top-k 0 and top-p 1 (or "off") switch that filter off."""
    vocab = gen.net.config.target_vocab_size
    args = {"cfg_scale": check_number("guidance", guidance, 0, limits.max_guidance),
            "temperature": check_number("temperature", temperature, 0, limits.max_temperature)}
    k = 0 if _is_off(top_k) else check_number("top-k", top_k, 0, vocab, integer=True)
    p = 1.0 if _is_off(top_p) else check_number("top-p", top_p, 0, 1)
    if p == 0:
        raise BadInput("top-p must be above 0 (1 or \"off\" switches it off)")
    args["top_k"] = None if k == 0 else k  # None: off, whatever the export stores
    args["top_p"] = None if p == 1 else p
    return args


def _is_off(value) -> bool:
    return isinstance(value, str) and value.strip().lower() in ("off", "none", "")


def check_svg(text, limits: Limits) -> str:
    if not isinstance(text, str) or not text.strip():
        raise BadInput("paste an SVG or upload a .svg file first")
    if len(text.encode("utf-8", "replace")) > limits.max_svg_bytes:
        raise BadInput(f"the SVG is larger than {limits.max_svg_bytes:,} bytes, this server's limit")
    return text


def read_upload(path: str | None, limits: Limits) -> str:
    """An uploaded file's text, refusing what is too large or not UTF-8 text."""
    if not path:
        return ""
    size = os.path.getsize(path)
    if size > limits.max_svg_bytes:
        raise BadInput(f"the file is {size:,} bytes; this server takes SVGs up to {limits.max_svg_bytes:,}")
    try:
        return Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("the file is not UTF-8 text, so not an SVG") from None


# -- one served model -----------------------------------------------------------------------------
class Model:
    """An export, its batcher, and what the page shows about it."""

    def __init__(self, path: str | Path, name: str, batcher_args: dict, device: str = "cpu"):
        self.path, self.name = Path(path), name
        self.gen = Generator.from_pretrained(self.path, device=device)
        self.kind = "svg" if hasattr(self.gen.target, "encode_prefix") else "image"
        self.recipe = _read_yaml(self.path.parent / "config.yaml")
        self.metrics = _read_metrics(self.path)
        self.max_len = self.gen.target.max_len
        every = batcher_args.pop("preview_every", None) or max(1, self.max_len // 8)
        self.batcher = Batcher(self.gen, preview_every=every, **batcher_args)

    @property
    def label(self) -> str:
        return f"{self.name} ({'text → SVG' if self.kind == 'svg' else 'text → image'})"

    def examples(self) -> list[str]:
        prompts = _get(self.recipe, "model", "init_args", "sample_prompts") or []
        return [str(p) for p in prompts][:12]

    def card(self) -> str:
        """Markdown: what the export is, what it was trained on, for how long, and how it scored."""
        c = self.gen.net.config
        params = sum(p.numel() for p in self.gen.net.parameters())
        s = self.gen.sampling
        lines = [f"**{_md(self.name)}**: {'text → SVG icons' if self.kind == 'svg' else 'text → images'}, "
                 f"`{_md(str(self.path))}`",
                 f"- model: {params / 1e6:.1f} M parameters, d_model {c.d_model}, {c.enc_layers} encoder / "
                 f"{c.dec_layers} decoder layers; writes up to {self.max_len} tokens",
                 f"- sampling defaults: guidance {s.cfg_scale}, temperature {s.temperature}, "
                 f"top-k {s.top_k or 'off'}, top-p {s.top_p or 'off'}"]
        if self.kind == "svg":
            lines.append(f"- SVG grid {self.gen.target.grid}; fill-in-the-middle training rate "
                         f"{self.gen.target.fim_rate}")
        if self.recipe:
            data = _get(self.recipe, "data", "init_args") or {}
            shards = data.get("train_shards") or "?"
            prepared = (data.get("prepare") or {}).get("dataset")
            lines.append(f"- data: `{_md(str(shards))}`" + (f" (built-in *{_md(str(prepared))}*)" if prepared else ""))
            steps = _get(self.recipe, "trainer", "max_steps")
            batch = data.get("batch_size")
            lines.append(f"- training: {steps} steps" + (f" of batch {batch}" if batch else "")
                         + " (recipe `config.yaml` beside the export)")
        else:
            lines.append("- no training recipe (`config.yaml`) beside the export")
        if self.metrics:
            where, flat = self.metrics
            shown = [(k, v) for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            cells = ", ".join(f"{_md(k)} {v:.4g}" for k, v in shown[:10])
            lines.append(f"- evaluation (`{_md(where)}`): {cells or 'no numeric metrics'}")
        else:
            lines.append("- no `metrics.json` from `python -m argen.eval` beside the export")
        return "\n".join(lines)


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_metrics(export: Path) -> tuple[str, dict] | None:
    for path in (export / "metrics.json", export.parent / "eval" / "metrics.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return str(path), data.get("metrics", data)
    return None


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _md(text: str) -> str:
    """Text safe inside Markdown (no HTML, no markup)."""
    return html.escape(text).replace("`", "'").replace("*", "\\*").replace("_", "\\_")


# -- turning outputs into what the page shows ------------------------------------------------------
def partial_images(model: Model, tokens: torch.Tensor) -> list[Image.Image]:
    """Images from the first ``t`` of ``L`` tokens: the rest decoded as code 0 and greyed out."""
    n, t = tokens.shape
    L = model.max_len
    side = int(round(math.sqrt(L)))
    full = torch.zeros(n, L, dtype=torch.long)
    full[:, :t] = tokens.cpu()
    images = model.gen.target.batch_decode(full)
    out = []
    for img in images:
        a = np.asarray(img.convert("RGB")).copy()
        H, W = a.shape[:2]
        ch, cw = H // side, W // side
        for k in range(t, side * side):
            r, c = divmod(k, side)
            a[r * ch : (r + 1) * ch, c * cw : (c + 1) * cw] = 200
        out.append(Image.fromarray(a))
    return out


def grid_of(images: list[Image.Image]) -> Image.Image:
    return image_grid(images, ncol=min(4, len(images)), cell=128)


def svg_gallery(svgs: list[str], downloads: bool) -> str:
    """SVGs inline as ``<img>`` data URIs (an image context never runs scripts), each downloadable."""
    cells = []
    for i, svg in enumerate(svgs, 1):
        uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
        link = f'<a download="sample-{i}.svg" href="{uri}">sample-{i}.svg</a>' if downloads else ""
        cells.append(f'<figure class="argen-svg"><img alt="sample {i}" src="{uri}" width="128" height="128">'
                     f"<figcaption>{link}</figcaption></figure>")
    return f'<div class="argen-svgs">{"".join(cells)}</div>'


def status_html(text: str, notes: list[str] = (), error: bool = False) -> str:
    """A status line; every piece of user text in it is escaped (shown as text, never as markup)."""
    body = html.escape(text) + "".join(f"<br>• {html.escape(n)}" for n in notes)
    return f'<div class="argen-status{" argen-error" if error else ""}">{body}</div>'


class Server:
    """The page's functions over the loaded models; one :class:`Server` per process."""

    def __init__(self, models: list[Model], limits: Limits):
        if not models:
            raise ValueError("give at least one export")
        self.models = {m.label: m for m in models}
        self.limits = limits
        self.files = Path(tempfile.mkdtemp(prefix="argen-serve-"))

    def close(self) -> None:
        for m in self.models.values():
            m.batcher.close()
        shutil.rmtree(self.files, ignore_errors=True)

    def model(self, label) -> Model:
        if label not in self.models:
            names = ", ".join(repr(k) for k in self.models)
            raise BadInput(f"unknown model {str(label)[:80]!r}; this server has {names}")
        return self.models[label]

    def _out_dir(self) -> Path:
        """A fresh folder for one request's downloads; folders older than an hour are removed."""
        now = time.time()
        for old in self.files.iterdir():
            try:
                if now - old.stat().st_mtime > 3600:
                    shutil.rmtree(old, ignore_errors=True)
            except FileNotFoundError:  # another request's handler removed it first
                pass
        return Path(tempfile.mkdtemp(dir=self.files))

    # -- the two endpoints ------------------------------------------------------------------------
    def generate(self, label, prompt, samples, guidance, temperature, top_k, top_p, seed, preview=True):
        """Generator for Gradio: previews while decoding, then (grid PNG, SVG html, files, status)."""
        try:
            m = self.model(label)
            prompt = check_prompt(prompt, self.limits)
            n = check_number("samples", samples, 1, self.limits.max_samples, integer=True)
            args = sampling_args(m.gen, guidance, temperature, top_k, top_p, self.limits)
            seed = self._seed(seed)
            request = Request(prompt, n, seed, preview=bool(preview) and self.limits.preview_s > 0, **args)
        except BadInput as e:
            raise gr.Error(str(e)) from None
        notes = prompt_notes(m.gen, prompt)
        yield from self._serve(m, request, notes, f"“{prompt}”")

    def complete(self, label, prompt, svg, mode, path_number, samples, guidance, temperature, top_k, top_p,
                 seed, preview=True):
        """Continue an SVG, or redraw one of its paths (``mode`` "fill"), through ``Generator.complete``."""
        try:
            m = self.model(label)
            if m.kind != "svg":
                raise BadInput(f"{m.name} draws images; SVG completion needs an SVG model")
            prompt = check_prompt(prompt, self.limits)
            svg = check_svg(svg, self.limits)
            n = check_number("samples", samples, 1, self.limits.max_samples, integer=True)
            args = sampling_args(m.gen, guidance, temperature, top_k, top_p, self.limits)
            seed = self._seed(seed)
            if mode not in ("continue", "fill"):
                raise BadInput(f"mode must be \"continue\" or \"fill\", got {str(mode)[:40]!r}")
            paths = self._svg_paths(m, svg)
            fill = None
            if mode == "fill":
                fill = check_number("path number", path_number, 1, len(paths), integer=True) - 1
                used = sum(len(p) for p in paths) + 2
            else:
                used = sum(len(p) for p in paths)
            if used >= m.max_len:
                raise BadInput(f"the SVG takes {used} tokens; this model writes at most {m.max_len}, so there is "
                               f"no room left to draw (simplify it or remove paths)")
            request = Request(prompt, n, seed, svg=svg, fill=fill, preview=bool(preview) and self.limits.preview_s > 0,
                              **args)
        except BadInput as e:
            raise gr.Error(str(e)) from None
        what = f"path {fill + 1} of {len(paths)} redrawn" if fill is not None else f"{len(paths)} paths continued"
        for update in self._serve(m, request, prompt_notes(m.gen, prompt), f"“{prompt}”, {what}"):
            yield update[1:]  # no image grid: SVG only

    def show_svg(self, label, svg):
        """The pasted/uploaded SVG as the model reads it (normalized, paths numbered in order)."""
        try:
            m = self.model(label)
            if m.kind != "svg":
                raise BadInput(f"{m.name} draws images; choose an SVG model")
            svg = check_svg(svg, self.limits)
            paths = self._svg_paths(m, svg)
        except BadInput as e:
            raise gr.Error(str(e)) from None
        normalized = m.gen.target.decode(m.gen.target.encode(svg))
        return svg_gallery([normalized], downloads=False) + status_html(f"{len(paths)} paths, numbered 1 to "
                                                                         f"{len(paths)} in drawing order")

    def load_upload(self, label, path):
        try:
            text = read_upload(path, self.limits)
        except BadInput as e:
            raise gr.Error(str(e)) from None
        return text, self.show_svg(label, text) if text else ""

    # -- helpers ----------------------------------------------------------------------------------
    @staticmethod
    def _seed(seed) -> int:
        seed = check_number("seed", seed, -1, SEED_MAX, integer=True)
        return int(torch.randint(0, SEED_MAX, ()).item()) if seed == -1 else seed

    @staticmethod
    def _svg_paths(m: Model, svg: str) -> list[list[int]]:
        try:
            return m.gen.target.encode_paths(svg)
        except SVGError as e:
            raise BadInput(f"this SVG was refused: {e}") from None

    def _serve(self, m: Model, request: Request, notes: list[str], what: str):
        start = time.perf_counter()
        try:
            m.batcher.submit(request)
        except Busy:
            raise gr.Error(BUSY) from None
        # A preview costs a decode, a PNG and a message. One model spends one preview per preview_s
        # however many requests share its batch, so previews never eat the throughput batching buys.
        shown = start
        while True:
            kind, payload = request.updates.get()
            if kind == "tokens":
                while not request.updates.empty():  # only the newest preview is worth drawing
                    nxt = request.updates.get()
                    if nxt[0] != "tokens":
                        kind, payload = nxt
                        break
                    payload = nxt[1]
            if kind == "tokens":
                if time.perf_counter() - shown >= self.limits.preview_s * max(1, m.batcher.active):
                    yield self._preview(m, payload, what)
                    shown = time.perf_counter()
            elif kind == "error":
                raise gr.Error(f"sampling failed: {payload}")
            else:
                seconds = time.perf_counter() - start
                yield self._final(m, payload, what, request, notes, seconds)
                return

    def _preview(self, m: Model, tokens: torch.Tensor, what: str):
        text = f"decoding {what}: {tokens.shape[1]} of {m.max_len} tokens"
        if m.kind == "image":
            return grid_of(partial_images(m, tokens)), "", None, status_html(text)
        return None, svg_gallery(m.gen.target.batch_decode(tokens), downloads=False), None, status_html(text)

    def _final(self, m: Model, outputs: list, what: str, request: Request, notes: list[str], seconds: float):
        out = self._out_dir()
        files = []
        for i, o in enumerate(outputs, 1):
            path = out / f"sample-{i}.{'svg' if m.kind == 'svg' else 'png'}"
            if m.kind == "svg":
                path.write_text(o)
            else:
                o.save(path)
            files.append(str(path))
        text = f"{what}: {len(outputs)} samples, seed {request.seed}, {seconds:.1f} s"
        if m.kind == "image":
            return grid_of(outputs), "", files, status_html(text, notes)
        return None, svg_gallery(outputs, downloads=True), files, status_html(text, notes)


# -- the page -------------------------------------------------------------------------------------
def setting(*args, **kwargs) -> gr.Slider:
    """A slider whose value reaches the server as sent: :func:`check_number` then names the setting
    in its message (Gradio's own bounds check says only "Value -3 is less than minimum value 1").
    Set on the instance: a subclass of a Gradio component makes Gradio write a stub file beside it."""
    slider = gr.Slider(*args, **kwargs)
    slider.preprocess = lambda payload: payload
    return slider


CSS = """
.argen-svgs { display: flex; flex-wrap: wrap; gap: 12px; }
.argen-svg { margin: 0; text-align: center; }
.argen-svg img { background: white; border: 1px solid #ccc; }
.argen-error { color: #b00020; }
"""


def theme() -> gr.themes.Base:
    """Gradio's default look with the system's fonts: the stock theme fetches web fonts."""
    return gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS)


def build(server: Server) -> gr.Blocks:
    labels = list(server.models)
    first = server.models[labels[0]]
    svg_labels = [k for k, m in server.models.items() if m.kind == "svg"]
    lim = server.limits

    def defaults(m: Model):
        s = m.gen.sampling
        vocab = m.gen.net.config.target_vocab_size
        return (gr.update(value=s.cfg_scale), gr.update(value=s.temperature),
                gr.update(value=s.top_k or 0, maximum=vocab), gr.update(value=s.top_p or 1.0))

    with gr.Blocks(title="argen demo", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        gr.Markdown("# argen demo\nSample from trained exports: text → image or text → SVG icon.")
        with gr.Row():
            model = gr.Dropdown(labels, value=labels[0], label="model", scale=1)
            with gr.Accordion("about this model", open=False):
                card = gr.Markdown(first.card())
        with gr.Row():
            samples = setting(1, lim.max_samples, value=min(4, lim.max_samples), step=1, label="samples")
            guidance = setting(0, lim.max_guidance, value=first.gen.sampling.cfg_scale, step=0.1,
                                 label="guidance (classifier-free; 1 = none)")
            temperature = setting(0, lim.max_temperature, value=first.gen.sampling.temperature, step=0.05,
                                    label="temperature (0 = greedy)")
        with gr.Row():
            top_k = setting(0, first.gen.net.config.target_vocab_size, value=first.gen.sampling.top_k or 0,
                              step=1, label="top-k (0 = off)")
            top_p = setting(0.01, 1, value=first.gen.sampling.top_p or 1.0, step=0.01, label="top-p (1 = off)")
            seed = gr.Number(value=-1, label="seed (-1 = random)")
        with gr.Tabs():
            with gr.Tab("generate"):
                with gr.Row():
                    prompt = gr.Textbox(label="prompt", placeholder="a red circle above a blue square", scale=4,
                                        elem_id="prompt")
                    go = gr.Button("generate", variant="primary", scale=1, elem_id="generate")
                examples = gr.Dataset(components=[prompt], samples=[[p] for p in first.examples()],
                                      label="examples from the training recipe", type="values",
                                      visible=bool(first.examples()))
                status = gr.HTML(elem_id="status")
                grid = gr.Image(label="samples (download: PNG)", type="pil", format="png", elem_id="grid",
                                visible=first.kind == "image", interactive=False)
                svgs = gr.HTML(elem_id="svgs", visible=first.kind == "svg")
                files = gr.File(label="downloads", file_count="multiple", interactive=False)
            with gr.Tab("complete an SVG", visible=bool(svg_labels)):
                gr.Markdown("Paste or upload an SVG: the model continues the drawing, or redraws one of its "
                            "paths (fill-in-the-middle). Only SVG models can.")
                with gr.Row():
                    svg_text = gr.Textbox(label="SVG", lines=6, max_lines=12, elem_id="svg-text")
                    upload = gr.File(label="upload .svg", file_types=[".svg"], type="filepath")
                svg_input = gr.HTML()
                with gr.Row():
                    c_prompt = gr.Textbox(label="prompt", placeholder="home", scale=3)
                    mode = gr.Radio(["continue", "fill"], value="continue", label="mode")
                    path_number = gr.Number(value=1, label="path to redraw (fill)")
                    c_go = gr.Button("complete", variant="primary")
                c_status = gr.HTML()
                c_svgs = gr.HTML()
                c_files = gr.File(label="downloads", file_count="multiple", interactive=False)

        def on_model(label):
            m = server.model(label)
            return (m.card(), gr.Dataset(samples=[[p] for p in m.examples()], visible=bool(m.examples())),
                    gr.update(visible=m.kind == "image"),
                    gr.update(visible=m.kind == "svg"), *defaults(m))

        model.change(on_model, model, [card, examples, grid, svgs, guidance, temperature, top_k, top_p],
                     api_visibility="private")
        examples.click(lambda x: x[0], examples, prompt, api_visibility="private")
        concurrency = lim_concurrency(server)
        sampling = [samples, guidance, temperature, top_k, top_p, seed]
        go.click(server.generate, [model, prompt, *sampling], [grid, svgs, files, status], api_name="generate",
                 concurrency_limit=concurrency)
        prompt.submit(server.generate, [model, prompt, *sampling], [grid, svgs, files, status],
                      api_visibility="private", concurrency_limit=concurrency)
        upload.upload(server.load_upload, [model, upload], [svg_text, svg_input], api_visibility="private")
        svg_text.blur(server.show_svg, [model, svg_text], svg_input, api_visibility="private")
        c_go.click(server.complete, [model, c_prompt, svg_text, mode, path_number, *sampling],
                   [c_svgs, c_files, c_status], api_name="complete", concurrency_limit=concurrency)
    return demo


def lim_concurrency(server: Server) -> int:
    """Handlers that may wait at once: every request the batchers may hold, plus the ones running."""
    return sum(m.batcher.max_queue + m.batcher.max_batch for m in server.models.values())


def launch(demo: gr.Blocks, server: Server, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    concurrency = lim_concurrency(server)
    demo.queue(max_size=2 * concurrency, default_concurrency_limit=concurrency)
    return demo.launch(server_name=host, server_port=port, max_threads=concurrency + 16, show_error=True,
                       theme=theme(), css=CSS, prevent_thread_lock=not block, quiet=not block,
                       enable_monitoring=False, ssr_mode=False, pwa=False, mcp_server=False)


def export_name(path: Path, taken: set[str]) -> str:
    path = path.resolve()
    name = path.parent.name if path.name == "export" else path.name
    base, i = name, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name


def load_models(paths: list[str], args: argparse.Namespace | None = None, device: str = "cpu") -> list[Model]:
    batcher_args = {} if args is None else {"max_batch": args.max_batch, "max_queue": args.max_queue,
                                            "wait": args.batch_wait}
    models, taken = [], set()
    for p in paths:
        name = export_name(Path(p), taken)
        taken.add(name)
        models.append(Model(p, name, dict(batcher_args), device=device))
    return models


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m argen.serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exports", nargs="+", metavar="EXPORT", help="export bundle folders (image or SVG models)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-samples", type=int, default=8, help="samples per request")
    p.add_argument("--max-prompt-chars", type=int, default=300, help="characters per prompt")
    p.add_argument("--max-svg-bytes", type=int, default=200_000, help="size of a pasted or uploaded SVG")
    p.add_argument("--max-batch", type=int, default=8, help="requests batched into one generate call")
    p.add_argument("--max-queue", type=int, default=16, help="requests waiting per model; more are told busy")
    p.add_argument("--batch-wait", type=float, default=0.1, help="seconds a lone request waits for company")
    p.add_argument("--preview-s", type=float, default=0.5,
                   help="seconds between progressive previews of one model, shared by the requests it serves (0: none)")
    args = p.parse_args(argv)
    for name in ("max_samples", "max_prompt_chars", "max_svg_bytes", "max_batch", "max_queue"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for e in args.exports:
        if not (Path(e) / "config.json").is_file():
            raise SystemExit(f"{e} is not an argen export (no config.json); train one first (see README)")
    limits = Limits(max_samples=args.max_samples, max_prompt_chars=args.max_prompt_chars,
                    max_svg_bytes=args.max_svg_bytes, preview_s=args.preview_s)
    server = Server(load_models(args.exports, args, device=args.device), limits)
    try:
        launch(build(server), server, host=args.host, port=args.port, block=True)
    finally:
        server.close()


if __name__ == "__main__":
    main()
