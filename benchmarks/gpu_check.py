"""One prepared pass of argen on a CUDA GPU: every recipe trains, sampling agrees eager vs compiled,
FSDP saves and resumes, and the MFU and decode-bandwidth figures.

Run it through ``benchmarks/gpu.sh``, which installs the carried wheels first. GPU time is scarce
(a quarter of an hour a session, start-up and a rerun included), so the checks run concurrently
where they only need to succeed, and alone where they measure speed; each check has its own time
limit and its own process, a failed check is reported and the rest go on, and the whole pass keeps
inside ``--budget-s`` (default 310 s on a GPU: with the install, 30% under the 8 minutes the pass
may take). A check that overruns is stopped and reported; ``--only`` reruns it with the whole budget.
One line per check::

    RESULT fit-parti-demo-compiled PASS 71.2s 40 steps, export written

then a Markdown table of the figures, and ``gpu-check.json`` + ``gpu-check.log`` (every check's
output) in ``--report``. ``--only a,b`` reruns chosen checks (and what they need) after a fix.
``--device cpu`` runs the same checks at toy sizes, so the script is tested where there is no GPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
# Eager vs compiled decoding runs the same code at any size, and compiles three times: the small preset.
SAMPLING_PRESET = "demo"


# -- sizes per device ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Scale:
    """What a check does on this device: full-size on a GPU, toy sizes on a CPU."""

    accelerator: str
    fit_steps: int
    big_preset: str  # the FSDP, DDP and speed checks
    image_size: int  # the random stage-1 tokenizer those checks use
    patch: int
    codebook: int
    big_batch: int
    sampling_len: int  # tokens per row in the eager-vs-compiled comparison
    mfu_args: tuple[str, ...]
    roofline_args: tuple[str, ...]
    jobs: int  # checks at a time in the concurrent phase
    budget_s: float
    slower: float  # each check's time limit is its GPU limit times this

    @property
    def device(self) -> str:
        return "cuda" if self.accelerator == "gpu" else "cpu"


GPU = Scale("gpu", fit_steps=40, big_preset="parti-350m", image_size=256, patch=8,
            codebook=8192, big_batch=8, sampling_len=256,
            mfu_args=("--batch", "32", "--text-len", "128", "--steps", "10", "--warmup", "3", "--apex-too"),
            roofline_args=("--prompts", "16", "--new-tokens", "256", "--repeats", "2"),
            jobs=6, budget_s=310, slower=1)
CPU = Scale("cpu", fit_steps=4, big_preset="demo", image_size=32, patch=4,
            codebook=512, big_batch=2, sampling_len=24,
            mfu_args=("--batch", "2", "--text-len", "16", "--steps", "2", "--warmup", "1", "--variants", "eager"),
            roofline_args=("--prompts", "2", "--new-tokens", "16", "--repeats", "1", "--text-len", "8"),
            jobs=2, budget_s=2400, slower=4)


# -- the checks ---------------------------------------------------------------------------------
@dataclass
class Check:
    """A named step: the command it runs (often this script's ``--run-one``), what it needs first,
    and whether it must have the device to itself (speed figures)."""

    name: str
    command: list[str]
    limit_s: float
    after: tuple[str, ...] = ()
    exclusive: bool = False
    judge: str = "rc"  # how its output becomes PASS/FAIL and a summary (see ``judge``)
    status: str = "PENDING"
    seconds: float = 0.0
    summary: str = ""
    figures: dict = field(default_factory=dict)


def fit(recipe: str, name: str, work: Path, s: Scale, *extra: str) -> list[str]:
    n = str(s.fit_steps)
    return [PY, "-m", "argen.train", "fit", "-c", recipe,
            "--trainer.accelerator", s.accelerator, "--trainer.devices", "1", "--trainer.precision", "bf16-mixed",
            "--trainer.max_steps", n, "--trainer.val_check_interval", n, "--trainer.limit_val_batches", "2",
            "--trainer.default_root_dir", str(work / name), "--checkpoint.every_n_train_steps", n, *extra]


def checks(work: Path, s: Scale) -> list[Check]:
    one = [PY, str(Path(__file__).resolve()), "--device", s.accelerator, "--work", str(work), "--run-one"]
    out: list[Check] = [
        Check("env", [*one, "env"], 60, judge="json"),
        Check("prepare", [*one, "prepare"], 90, after=("env",), judge="json"),
    ]
    sample = ("--model.init_args.sample_every_n_steps", str(s.fit_steps))  # in-training sampling on the device
    tokenizer = ("--model.init_args.target.init_args.path", str(work / "fit-tokenizer-eager" / "export"))
    for mode, extra in (("eager", ()), ("compiled", ("--model.init_args.compile", "true"))):
        out += [
            Check(f"fit-tokenizer-{mode}", fit("tokenizer/demo.yaml", f"fit-tokenizer-{mode}", work, s, *extra),
                  180, after=("prepare",), judge="fit"),
            Check(f"fit-iconshop-{mode}",
                  fit("train/iconshop-demo.yaml", f"fit-iconshop-{mode}", work, s, *extra, *sample),
                  180, after=("prepare",), judge="fit"),
            Check(f"fit-parti-demo-{mode}",
                  fit("train/demo.yaml", f"fit-parti-demo-{mode}", work, s, *extra, *tokenizer, *sample),
                  180, after=("fit-tokenizer-eager",), judge="fit"),
        ]
    out += [
        Check("fsdp", [*one, "fsdp"], 300, after=("prepare",), judge="json"),
        Check("fit-parti-350m", big_fit("train/parti-350m.yaml", work / "fit-parti-350m", s, work,
                                        "--trainer.max_steps", "4", "--trainer.val_check_interval", "4"),
              180, after=("prepare",), judge="fit"),
        Check("sampling", [*one, "sampling"], 240, after=("prepare",), judge="json"),
        Check("sample-cli", [*one, "sample-cli"], 150, after=("fit-parti-demo-eager", "fit-iconshop-eager"),
              judge="json"),
        Check("mfu", [PY, str(ROOT / "benchmarks/train.py"), "mfu", "--preset", s.big_preset,
                      "--device", s.device, "--dtype", "bfloat16", *s.mfu_args, "--json"],
              110, after=("env",), exclusive=True, judge="json"),
        Check("roofline", [PY, str(ROOT / "benchmarks/sampling.py"), "roofline", "--preset", s.big_preset,
                           "--device", s.device, *s.roofline_args, "--json"],
              70, after=("env",), exclusive=True, judge="json"),
    ]
    return out


# -- in-process checks (run in their own process by the driver) ----------------------------------
def run_env(s: Scale, work: Path) -> dict:
    """Versions, the device, and an import of every argen module a GPU run uses."""
    import importlib

    import torch

    versions = {}
    for name in ("torch", "lightning", "vector_quantize_pytorch", "webdataset", "wandb", "jsonargparse",
                 "tokenizers", "safetensors", "defusedxml", "resvg_py", "einops", "torchmetrics"):
        module = importlib.import_module(name)
        versions[name] = getattr(module, "__version__", "?")
    for name in ("argen.train", "argen.sample", "argen.eval.fid", "argen.vqgan", "argen.svg",
                 "argen.transformer.speculative"):
        importlib.import_module(name)
    from argen.nn import _apex_norms

    out = {"versions": versions, "apex_norms": _apex_norms() is not None}
    if s.accelerator == "gpu":
        if not torch.cuda.is_available():
            raise SystemExit("torch sees no CUDA device")
        out.update(device=torch.cuda.get_device_name(), bf16=torch.cuda.is_bf16_supported(),
                   capability=".".join(map(str, torch.cuda.get_device_capability())),
                   memory_gb=torch.cuda.get_device_properties(0).total_memory / 2**30)
        a, b = torch.randn(2, 8192, 8192, device="cuda", dtype=torch.bfloat16)
        for _ in range(3):
            a @ b
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        torch.cuda.synchronize()
        out["matmul_bf16_tflops"] = 10 * 2 * 8192**3 / (time.perf_counter() - start) / 1e12
    out["summary"] = f"{out.get('device', 'cpu')}, torch {versions['torch']}, apex norms {out['apex_norms']}"
    if "matmul_bf16_tflops" in out:
        out["summary"] += f", bf16 matmul {out['matmul_bf16_tflops']:.0f} TFLOP/s"
    return out


def run_prepare(s: Scale, work: Path) -> dict:
    """The demo recipes' data, prepared by their own data sections (so that the fits running side by
    side find it ready), shapes at the big checks' image size, and a random stage-1 tokenizer of the
    shape Parti's recipes use (ViT-VQGAN-Base on a GPU), which the FSDP, DDP and sampling checks read."""
    import yaml

    from argen.data import ShardDataModule
    from argen.vqgan.model import VQGAN, VQGANConfig, config_from_preset
    from argen.vqgan.target import ImageTokenizer

    icons = yaml.safe_load(Path("train/iconshop-demo.yaml").read_text())["data"]["init_args"]["prepare"]["out"]
    if not Path(icons, "prepare.json").is_file():
        raise SystemExit(f"{icons} is missing: carry it with the working tree (docs/scale.md, 'Checking on a "
                         f"GPU'), or prepare it where the icon sets are installed")
    for recipe in ("tokenizer/demo.yaml", "train/demo.yaml"):
        ShardDataModule(**yaml.safe_load(Path(recipe).read_text())["data"]["init_args"]).prepare_data()
    shapes = work / "shapes-big"
    ShardDataModule(prepare={"dataset": "shapes", "out": str(shapes), "train": 256, "val": 32,
                             "size": s.image_size, "vocab_size": 256}).prepare_data()
    shape = dict(image_size=s.image_size, patch_size=s.patch, codebook_size=s.codebook, kmeans_init=False)
    config = (config_from_preset("base", code_dim=32, **shape) if s.accelerator == "gpu"
              else VQGANConfig(dim=64, enc_layers=1, dec_layers=1, heads=2, mlp_dim=128, code_dim=16, **shape))
    ImageTokenizer(VQGAN(config).eval()).save_pretrained(work / "random-tokenizer")
    return {"summary": f"demo data, {icons} (carried), {shapes.name} at {s.image_size} px, random tokenizer "
                       f"{config.grid_size[0]}x{config.grid_size[1]} tokens of {s.codebook} codes"}


def big_fit(recipe: str, root: Path, s: Scale, work: Path, *extra: str) -> list[str]:
    """A Parti recipe with the big preset, on the shapes-big shards and the random stage-1 tokenizer."""
    shapes = work / "shapes-big"
    return [PY, "-m", "argen.train", "fit", "-c", recipe, "--model.init_args.preset", s.big_preset,
            "--model.init_args.target.init_args.path", str(work / "random-tokenizer"),
            "--trainer.accelerator", s.accelerator, "--trainer.devices", "1", "--trainer.default_root_dir", str(root),
            "--trainer.limit_val_batches", "1", "--data.init_args.train_shards", f"{shapes}/train-*.tar",
            "--data.init_args.val_shards", f"{shapes}/val-*.tar",
            "--data.init_args.text_tokenizer", f"{shapes}/tokenizer.json",
            "--data.init_args.image_size", str(s.image_size), "--data.init_args.batch_size", str(s.big_batch),
            "--data.init_args.num_workers", "2", "--data.init_args.val_batches", "1", *extra]


def run_fsdp(s: Scale, work: Path) -> dict:
    """The FSDP recipe (train/parti-3b.yaml: block wrapping, activation checkpointing, sharded
    checkpoints) with the big preset on one device: a few steps, a checkpoint, a resume, an export.
    Lightning's FSDP needs a GPU: on a CPU the same run goes through DDP (the plumbing only)."""
    root = work / "fsdp"
    strategy = "fsdp" if s.accelerator == "gpu" else "ddp"
    base = big_fit("train/parti-3b.yaml", root, s, work, "--checkpoint.every_n_train_steps", "2",
                   "--trainer.val_check_interval", "2",
                   *(("--trainer.strategy", "ddp") if strategy == "ddp" else ()))
    def fit_to(steps: int, *more: str) -> str:
        r = subprocess.run([*base, "--trainer.max_steps", str(steps), *more], text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        print(r.stdout[-20000:])
        if r.returncode:
            raise SystemExit(f"fit to step {steps} failed (rc {r.returncode})")
        return r.stdout

    fit_to(4)
    ckpt = root / "checkpoints" / "last.ckpt"
    if not ckpt.exists():
        raise SystemExit(f"no checkpoint at {ckpt}")
    sharded = ckpt.is_dir()
    if not re.search(r"[Rr]estor\w* .*checkpoint", fit_to(6, "--ckpt_path", "last")):
        raise SystemExit("the second fit did not say it restored the checkpoint")
    from argen.generator import Generator

    gen = Generator.from_pretrained(root / "export")
    params = sum(p.numel() for p in gen.net.parameters())
    return {"sharded_checkpoint": sharded, "params_m": params / 1e6,
            "summary": f"{strategy}: {s.big_preset} ({params / 1e6:.0f}M) 4 steps, "
                       f"{'sharded' if sharded else 'full'} checkpoint, resumed to 6, export loads"}


def run_sampling(s: Scale, work: Path) -> dict:
    """Eager vs compiled (CUDA graphs on a GPU) decoding on a real image target (random weights):
    equal tokens at fp32 (sequential and speculative), close logits at bf16."""
    import torch

    from argen.transformer import EncoderDecoder, config_from_preset, generate
    from argen.transformer.speculative import generate_speculative
    from argen.vqgan.target import ImageTarget

    device = torch.device(s.device)
    target = ImageTarget(work / "random-tokenizer", device=device)
    config = config_from_preset(SAMPLING_PRESET, target_vocab_size=target.vocab_size,
                                max_target_len=target.max_len, target_feature_sizes=tuple(target.feature_sizes))
    torch.manual_seed(0)
    with device:
        model = EncoderDecoder(config).eval()
    prompts, text_len, n = 4, 16, s.sampling_len
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, config.text_vocab_size, (prompts, text_len), generator=g).to(device)
    mask = torch.ones_like(ids, dtype=torch.bool)
    uncond = torch.zeros(1, 2, dtype=torch.long, device=device)
    kw = dict(uncond_ids=uncond, cfg_scale=3.0, seeds=list(range(prompts)), max_len=n)
    out: dict = {}

    eager, eager_logits = generate(model, ids, mask, target, return_logits=True, **kw)
    compiled, compiled_logits = generate(model, ids, mask, target, return_logits=True, compile=True, **kw)
    out["fp32_tokens_equal"] = bool(torch.equal(eager, compiled))
    out["fp32_max_logit_diff"] = float((eager_logits - compiled_logits).abs().max())
    spec = dict(kw, window=4)
    out["fp32_speculative_equal"] = bool(torch.equal(generate_speculative(model, ids, mask, target, **spec),
                                                     generate_speculative(model, ids, mask, target, compile=True,
                                                                          **spec)))
    # bf16: greedy, so that tokens agree as long as the logits do. "Close" means compiled bf16 is as
    # near eager bf16 as eager bf16 is to fp32 (2x slack): compilation adds no error beyond bf16's own.
    greedy = dict(kw, temperature=0.0)
    ref, ref_logits = generate(model, ids, mask, target, return_logits=True, **greedy)
    model.to(torch.bfloat16)
    a, la = generate(model, ids, mask, target, return_logits=True, **greedy)
    b, lb = generate(model, ids, mask, target, return_logits=True, compile=True, **greedy)
    bf16_error = max_diff_while_equal(a, la, ref, ref_logits)
    compile_error = max_diff_while_equal(a, la, b, lb)
    out.update(bf16_tokens_equal_share=float((a == b).float().mean()), bf16_vs_fp32_max_logit_diff=bf16_error,
               compiled_vs_eager_bf16_max_logit_diff=compile_error)
    ok = out["fp32_tokens_equal"] and out["fp32_speculative_equal"] and compile_error <= 2 * bf16_error + 1e-3
    out["summary"] = (f"{SAMPLING_PRESET} {n} tokens x {prompts} prompts (CFG): fp32 tokens equal "
                      f"{out['fp32_tokens_equal']} (max logit diff {out['fp32_max_logit_diff']:.1e}), "
                      f"speculative equal {out['fp32_speculative_equal']}; bf16 max logit diff "
                      f"{compile_error:.3f} compiled vs eager, {bf16_error:.3f} eager vs fp32, "
                      f"{out['bf16_tokens_equal_share']:.0%} tokens equal")
    if not ok:
        print(json.dumps(out))
        raise SystemExit("eager and compiled decoding disagree")
    return out


def max_diff_while_equal(tokens, logits, other_tokens, other_logits) -> float:
    """Largest logit difference over the steps where both runs had decoded the same tokens so far
    (step t's logits come from tokens < t, so they compare up to and including the first mismatch)."""
    same = (tokens == other_tokens).all(0)
    upto = int(same.logical_not().nonzero()[0, 0]) + 1 if not bool(same.all()) else tokens.shape[1]
    return float((logits[:, :upto] - other_logits[:, :upto]).abs().max())


def run_sample_cli(s: Scale, work: Path) -> dict:
    """``python -m argen.sample`` on the device: the image demo's export compiled, the SVG demo's speculative."""
    device = s.device
    report = []
    for export, extra, out in (
        (work / "fit-parti-demo-eager" / "export", ["--compile"], work / "sample-parti.png"),
        (work / "fit-iconshop-eager" / "export", ["--speculative"], work / "sample-icons"),
    ):
        cmd = [PY, "-m", "argen.sample", str(export), "--prompt", "a red circle", "--prompt", "heart",
               "--num-samples", "4", "--device", device, "--out", str(out), *extra]
        start = time.perf_counter()
        r = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        print(r.stdout[-5000:])
        if r.returncode or not out.exists():
            raise SystemExit(f"{shlex.join(cmd)} failed (rc {r.returncode})")
        report.append(f"{export.parent.name} {' '.join(extra)} {time.perf_counter() - start:.0f}s")
    return {"summary": "; ".join(report)}


IN_PROCESS = {"env": run_env, "prepare": run_prepare, "fsdp": run_fsdp, "sampling": run_sampling,
              "sample-cli": run_sample_cli}


# -- judging --------------------------------------------------------------------------------------
def last_json(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def judge(check: Check, rc: int, text: str, work: Path) -> None:
    """Set ``check.status``, ``summary`` and ``figures`` from its exit status and output."""
    check.status = "PASS" if rc == 0 else "FAIL"
    if rc != 0:
        tail = [line for line in text.splitlines() if line.strip()][-1:] or [""]
        check.summary = f"rc {rc}: {tail[0][:200]}"
        return
    if check.judge == "fit":
        export = work / check.name / "export"
        steps = re.findall(r"max_steps=(\d+)` reached", text)
        # the progress bar's last train/loss (rich: "train/loss: 5.395", tqdm: "train/loss=5.395")
        losses = re.findall(r"train/loss[:=]\s*([-+\w.]+)", text.replace("\r", "\n"))
        loss = float(losses[-1]) if losses and re.fullmatch(r"[-+]?(\d[\d.]*|nan|inf)", losses[-1]) else None
        written = "export written" if export.exists() else "NO export"
        check.summary = f"{steps[-1] if steps else '?'} steps, loss {'?' if loss is None else f'{loss:.3f}'}, {written}"
        if not export.exists() or (loss is not None and not math.isfinite(loss)):
            check.status = "FAIL"
    elif check.judge == "json":
        data = last_json(text)
        if data is None:
            check.status, check.summary = "FAIL", "no JSON result line"
            return
        check.figures = data
        check.summary = data.get("summary") or summarize(check.name, data)


def summarize(name: str, data: dict) -> str:
    if name == "mfu":
        parts = [f"{r['variant']} " + (f"{r['mfu']:.1%} MFU" if "mfu" in r else "(no peak known)")
                 + f" ({r['tflops']:.1f} TFLOP/s, {r['tokens_per_s']:.0f} tok/s, batch {r['batch']})"
                 for r in data.get("results", [])]
        return "; ".join(parts + data.get("skipped", []))
    if name == "roofline":
        return "; ".join(f"{v} {data[f'{v}_ms_per_step']:.2f} ms/step, {data[f'{v}_roofline_share']:.0%} of "
                         f"{data['copy_bandwidth_GBps']:.0f} GB/s" for v in ("eager", "compiled"))
    return ""


# -- the driver -----------------------------------------------------------------------------------
def needed(all_checks: list[Check], only: set[str]) -> list[Check]:
    """The chosen checks and, transitively, what they need."""
    by_name = {c.name: c for c in all_checks}
    unknown = only - set(by_name)
    if unknown:
        raise SystemExit(f"unknown checks {sorted(unknown)}; known: {', '.join(by_name)}")
    keep, todo = set(), list(only)
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo += by_name[name].after
    return [c for c in all_checks if c.name in keep]


@dataclass
class Running:
    check: Check
    proc: subprocess.Popen
    log: Path
    started: float
    deadline: float


def start(check: Check, logs: Path, limit: float) -> Running:
    log = logs / f"{check.name}.log"
    with open(log, "w") as handle:
        handle.write(f"$ {shlex.join(check.command)}\n")
        handle.flush()
        proc = subprocess.Popen(check.command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)  # its own group: a timeout kills its children too
    now = time.monotonic()
    return Running(check, proc, log, now, now + limit)


def kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_all(todo: list[Check], work: Path, jobs: int, budget_s: float, slower: float) -> None:
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    reserved = sum(c.limit_s * slower for c in todo if c.exclusive)  # the speed checks keep their time
    running: list[Running] = []
    done = {c.name: c for c in todo}

    def finish(r: Running, rc: int, note: str = "") -> None:
        r.check.seconds = time.monotonic() - r.started
        judge(r.check, rc, r.log.read_text(errors="replace"), work)
        if note:
            r.check.status, r.check.summary = "FAIL", note
        print(f"RESULT {r.check.name} {r.check.status} {r.check.seconds:.1f}s {r.check.summary}", flush=True)

    while True:
        for c in todo:  # a check whose prerequisite failed is skipped
            if c.status == "PENDING" and any(done[a].status in ("FAIL", "SKIP") for a in c.after if a in done):
                c.status, c.summary = "SKIP", "needs " + ", ".join(a for a in c.after if done[a].status != "PASS")
                print(f"RESULT {c.name} SKIP 0.0s {c.summary}", flush=True)
        ready = [c for c in todo
                 if c.status == "PENDING" and all(done[a].status == "PASS" for a in c.after if a in done)]
        concurrent_left = any(c.status in ("PENDING", "RUNNING") and not c.exclusive for c in todo)
        now = time.monotonic()
        for c in ready:
            if c.exclusive and (running or concurrent_left):
                continue
            if not c.exclusive and len(running) >= jobs:
                continue
            if running and any(r.check.exclusive for r in running):
                continue
            left = t0 + budget_s - now - (0 if c.exclusive else reserved)
            if left < 5:
                c.status, c.summary = "SKIP", "out of time (--budget-s)"
                print(f"RESULT {c.name} SKIP 0.0s {c.summary}", flush=True)
                continue
            c.status = "RUNNING"
            running.append(start(c, logs, min(c.limit_s * slower, left)))
            if c.exclusive:
                reserved -= c.limit_s * slower
                break
        if not running:
            if all(c.status not in ("PENDING", "RUNNING") for c in todo):
                return
            time.sleep(0.2)
            continue
        time.sleep(0.5)
        for r in list(running):
            rc = r.proc.poll()
            if rc is None and time.monotonic() > r.deadline:
                kill(r.proc)
                running.remove(r)
                finish(r, -9, f"timed out after {r.deadline - r.started:.0f}s")
            elif rc is not None:
                running.remove(r)
                finish(r, rc)


def table(todo: list[Check], meta: dict) -> str:
    rows = ["| check | result | seconds | what it found |", "| --- | --- | --- | --- |"]
    rows += [f"| {c.name} | {c.status} | {c.seconds:.0f} | {c.summary} |" for c in todo]
    head = f"{meta.get('device', '?')}, torch {meta.get('torch', '?')}, {meta['date']}"
    return head + "\n\n" + "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["gpu", "cpu"], default="gpu",
                   help="gpu: the real check; cpu: the same checks at toy sizes (tests the script)")
    p.add_argument("--work", default="runs/gpu-check", help="scratch folder for runs and logs")
    p.add_argument("--report", default=None, help="folder for gpu-check.json and gpu-check.log (default: --work)")
    p.add_argument("--only", default="", help="comma-separated checks to run (with what they need)")
    p.add_argument("--skip", default="", help="comma-separated checks not to run")
    p.add_argument("--budget-s", type=float, default=None, help="the whole pass's time (default: 310 s on a GPU)")
    p.add_argument("--jobs", type=int, default=None, help="checks at a time in the concurrent phase")
    p.add_argument("--run-one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    scale = GPU if args.device == "gpu" else CPU
    work = Path(args.work).resolve()
    os.chdir(ROOT)
    if args.run_one:  # one in-process check, in its own process: its JSON result is the last line
        print(json.dumps(IN_PROCESS[args.run_one](scale, work)), flush=True)
        return 0

    all_checks = checks(work, scale)
    todo = needed(all_checks, {n for n in args.only.split(",") if n}) if args.only else all_checks
    skip = {n for n in args.skip.split(",") if n}
    for c in todo:
        if c.name in skip:
            c.status, c.summary = "SKIP", "--skip"
    work.mkdir(parents=True, exist_ok=True)
    for old in (work / "logs").glob("*.log"):
        old.unlink()
    started = time.monotonic()
    run_all(todo, work, args.jobs or scale.jobs, args.budget_s or scale.budget_s, scale.slower)
    env = next((c.figures for c in todo if c.name == "env"), {})
    meta = {"device": env.get("device", "cpu" if scale.accelerator == "cpu" else "?"),
            "torch": env.get("versions", {}).get("torch"), "date": datetime.date.today().isoformat(),
            "wall_s": time.monotonic() - started}
    report = Path(args.report) if args.report else work
    report.mkdir(parents=True, exist_ok=True)
    results = [{"name": c.name, "status": c.status, "seconds": round(c.seconds, 1), "summary": c.summary,
                "figures": c.figures} for c in todo]
    (report / "gpu-check.json").write_text(json.dumps({**meta, "results": results}, indent=1) + "\n")
    with open(report / "gpu-check.log", "w") as f:
        for c in todo:
            log = work / "logs" / f"{c.name}.log"
            f.write(f"\n===== {c.name}: {c.status} =====\n" + (log.read_text(errors="replace") if log.exists() else ""))
    print("\n" + table(todo, meta))
    print(f"\nwall {meta['wall_s']:.0f} s; report in {report}")
    return 1 if any(c.status == "FAIL" or c.summary.startswith("out of time") for c in todo) else 0


if __name__ == "__main__":
    sys.exit(main())
