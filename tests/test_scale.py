"""Scale-out: 2-process DDP through the real CLI, SIGTERM and resume, FSDP recipes, throughput and MFU."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import webdataset as wds

from argen.throughput import PEAK_FLOPS, flops_per_token, forward_flops, peak_flops, training_flops
from argen.transformer.model import DecoderBlock, EncoderBlock, EncoderDecoder, config_from_preset

ROOT = Path(__file__).resolve().parents[1]

# A test-only callback, imported by the training subprocesses from PYTHONPATH: it records what each
# rank trained on (step reached, sample keys) so the test can check it from outside.
PROBE = '''
import json
from lightning.pytorch.callbacks import Callback


class Probe(Callback):
    def __init__(self, out: str):
        self.out, self.keys, self.first = out, [], None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.first is None:
            self.first = trainer.global_step
        self.keys.extend(batch["key"])
        record = {"first": self.first, "step": trainer.global_step, "world": trainer.world_size, "keys": self.keys}
        with open(f"{self.out}/rank{trainer.global_rank}.json", "w") as f:
            json.dump(record, f)
'''


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> Path:
    """Shapes shards (16 train shards of 4 samples), a text tokenizer and two untrained stage-1 exports:
    ``vq`` (16 px -> 4x4 tokens, the demo run) and ``vq-parti`` (32x32 tokens from 8192 codes, Parti's)."""
    from argen.data.recipes import prepare_recipe, tokenizer_for
    from argen.vqgan import VQGAN, ImageTokenizer, VQGANConfig

    d = tmp_path_factory.mktemp("scale")
    prepare_recipe({"dataset": "shapes", "out": str(d / "shapes"), "train": 64, "val": 16, "size": 16, "seed": 0},
                   progress=False)
    tokenizer_for(str(d / "shapes" / "train-*.tar"), 64, d / "tokenizer.json", progress=False)
    torch.manual_seed(0)
    small = VQGANConfig(image_size=16, patch_size=4, dim=16, enc_layers=1, dec_layers=1, heads=2, mlp_dim=32,
                        codebook_size=64, code_dim=8, kmeans_init=False)
    ImageTokenizer(VQGAN(small)).save_pretrained(d / "vq")
    parti = VQGANConfig(image_size=64, patch_size=2, dim=8, enc_layers=1, dec_layers=1, heads=2, mlp_dim=16,
                        codebook_size=8192, code_dim=8, kmeans_init=False)
    ImageTokenizer(VQGAN(parti)).save_pretrained(d / "vq-parti")
    (d / "probe").mkdir()
    (d / "probe" / "probe.py").write_text(PROBE)
    return d


def demo_args(fx: Path, run: Path, callbacks: list[dict]) -> list[str]:
    """train/demo.yaml pointed at the fixture's shards, tokenizer and stage-1 export."""
    return ["-c", "train/demo.yaml", "--trainer.default_root_dir", str(run),
            "--model.init_args.target.init_args.path", str(fx / "vq"),
            "--data.init_args.train_shards", str(fx / "shapes" / "train-*.tar"),
            "--data.init_args.val_shards", str(fx / "shapes" / "val-*.tar"),
            "--data.init_args.text_tokenizer", str(fx / "tokenizer.json"), "--data.init_args.prepare", "null",
            "--data.init_args.image_size", "16", "--data.init_args.batch_size", "8",
            "--trainer.enable_progress_bar", "false",
            "--trainer.callbacks", json.dumps([{"class_path": "probe.Probe", "init_args": {"out": str(run)}},
                                               *callbacks])]


def train_env(fx: Path) -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(fx / "probe"), os.environ.get("PYTHONPATH", "")]),
                WANDB_MODE="offline", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")


def shard_of(shards: Path) -> dict[str, str]:
    """Sample key -> the shard file holding it."""
    return {s["__key__"]: Path(s["__url__"]).name
            for s in wds.WebDataset(sorted(str(p) for p in shards.glob("train-*.tar")), shardshuffle=False)}


# -- multi-process DDP ----------------------------------------------------------------------------
def test_ddp_two_processes_on_cpu_disjoint_shards_one_checkpoint(fx, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(run)}}
    cmd = [sys.executable, "-m", "argen.train", "fit", *demo_args(fx, run, []), "--throughput.peak_flops", "1e11",
           "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
           "--trainer.max_steps", "6", "--checkpoint.every_n_train_steps", "6", "--trainer.log_every_n_steps", "2",
           "--trainer.logger", json.dumps(logger)]
    res = subprocess.run(cmd, cwd=ROOT, env=train_env(fx), capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]

    ranks = [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["step"] for r in ranks] == [6, 6] and ranks[0]["world"] == 2  # equal step counts
    assert [len(r["keys"]) for r in ranks] == [48, 48]
    where = shard_of(fx / "shapes")
    shards = [{where[k] for k in r["keys"]} for r in ranks]
    assert not set(ranks[0]["keys"]) & set(ranks[1]["keys"])
    assert shards[0] and shards[1] and not shards[0] & shards[1], shards  # ranks read disjoint shards

    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]  # one checkpoint
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["global_step"] == 6
    assert (run / "export" / "model.safetensors").is_file()  # rank 0 exported after fit

    # throughput: global tokens/s = samples/s x 16 target tokens, MFU against the given peak
    import csv

    rows = [r for r in csv.DictReader(open(next(run.glob("version_*/metrics.csv")))) if r.get("perf/tokens_per_s")]
    assert [int(r["step"]) for r in rows] == [2, 4, 6]
    for r in rows:
        tokens, samples = float(r["perf/tokens_per_s"]), float(r["perf/samples_per_s"])
        assert tokens > 0 and math.isclose(tokens, 16 * samples, rel_tol=1e-6)
        assert math.isclose(float(r["perf/mfu"]), float(r["perf/tflops_per_device"]) * 1e12 / 1e11, rel_tol=1e-6)


# -- preemption -----------------------------------------------------------------------------------
def test_sigterm_saves_last_checkpoint_and_resume_continues_there(fx, tmp_path, monkeypatch):
    from argen.train import main

    run = tmp_path / "run"
    run.mkdir()
    args = [*demo_args(fx, run, []), "--trainer.logger", "false", "--trainer.num_sanity_val_steps", "0"]
    proc = subprocess.Popen([sys.executable, "-m", "argen.train", "fit", *args, "--trainer.max_steps", "1000"],
                            cwd=ROOT, env=train_env(fx), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            try:
                if json.loads((run / "rank0.json").read_text())["step"] >= 3:
                    break
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]  # a clean exit, not a crash
    stopped = json.loads((run / "rank0.json").read_text())["step"]
    assert 3 <= stopped < 1000
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["global_step"] == stopped  # nothing trained was lost
    assert not (run / "export").exists()  # an interrupted run exports nothing

    monkeypatch.syspath_prepend(str(fx / "probe"))  # resume in this process (no second interpreter start-up)
    cli = main(["fit", *args, "--trainer.max_steps", str(stopped + 2), "--ckpt_path", "last"])
    resumed = json.loads((run / "rank0.json").read_text())
    assert resumed["first"] == stopped + 1 and resumed["step"] == stopped + 2  # continued, not restarted
    assert cli.trainer.global_step == stopped + 2
    assert cli.trainer.lr_scheduler_configs[0].scheduler.last_epoch == stopped + 2


# -- Parti recipes -------------------------------------------------------------------------------
@pytest.mark.parametrize("recipe, nominal, strategy", [("parti-350m", 350e6, "ddp"), ("parti-750m", 750e6, "ddp"),
                                                       ("parti-3b", 3e9, "FULL_SHARD"),
                                                       ("parti-20b", 20e9, "HYBRID_SHARD")])
def test_parti_recipes_build_on_the_meta_device(fx, tmp_path, recipe, nominal, strategy):
    """Each recipe parses through the real CLI (3B and 20B into an FSDP strategy with block-level
    wrapping and activation checkpointing) and its network, with Parti's vocabularies and lengths,
    builds on the meta device."""
    from lightning.pytorch import LightningDataModule, LightningModule
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        CheckpointWrapper,
        apply_activation_checkpointing,
        checkpoint_wrapper,
    )

    from argen.train import ArgenCLI

    class NoTrainer(ArgenCLI):  # a GPU Trainer cannot be built on this machine; everything else is real
        def instantiate_trainer(self, **kwargs):
            return None

    args = ["-c", f"train/{recipe}.yaml", "--trainer.default_root_dir", str(tmp_path / "run"),
            "--model.init_args.target.init_args.path", str(fx / "vq-parti"),
            "--data.init_args.train_shards", str(fx / "shapes" / "train-*.tar"),
            "--data.init_args.val_shards", str(fx / "shapes" / "val-*.tar"),
            "--data.init_args.text_tokenizer", str(fx / "tokenizer.json"),
            "--model.init_args.arch", json.dumps({"text_vocab_size": 16384})]  # Parti's 16k text vocabulary
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        cli = NoTrainer(LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                        args=args, run=False)
    finally:
        os.chdir(cwd)
    trainer_cfg = cli.config_init.trainer
    assert trainer_cfg.precision == "bf16-mixed" and trainer_cfg.accelerator == "gpu"
    assert type(cli.config_init.throughput).__name__ == "Throughput"  # every run gets it from the CLI
    fsdp = trainer_cfg.strategy
    if strategy == "ddp":
        assert fsdp == "ddp"
    else:
        assert isinstance(fsdp, FSDPStrategy) and fsdp.sharding_strategy.name == strategy
        blocks = {EncoderBlock, DecoderBlock}
        assert fsdp.kwargs["auto_wrap_policy"]._module_classes == blocks
        assert fsdp._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes == blocks
        assert cli.model.hparams.sample_every_n_steps == 0  # rank-0 sampling would deadlock FSDP

    module = cli.model
    module.trainer = SimpleNamespace(datamodule=cli.datamodule)  # what configure_model reads from the trainer
    with torch.device("meta"):
        module.configure_model()
    net = module.net
    c = net.config
    assert next(net.parameters()).device.type == "meta"
    assert (c.text_vocab_size, c.max_text_len, c.target_vocab_size, c.max_target_len) == (16384, 128, 8192, 1024)
    assert c.target_feature_sizes == (32, 32)
    assert abs(net.num_parameters() - nominal) / nominal < 0.10
    if strategy != "ddp":
        apply_activation_checkpointing(net, checkpoint_wrapper_fn=checkpoint_wrapper,
                                       **fsdp._activation_checkpointing_kwargs)
        assert sum(isinstance(m, CheckpointWrapper) for m in net.modules()) == c.enc_layers + c.dec_layers


# -- FLOPs and MFU --------------------------------------------------------------------------------
def test_flop_formula_matches_counted_matmuls_exactly():
    """The analytic count equals PyTorch's FLOP counter over a real forward and backward (math SDPA,
    which computes every query-key pair, as the formula counts)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    c = config_from_preset("demo", text_vocab_size=100, target_vocab_size=50, max_text_len=12, max_target_len=20,
                           d_model=64, n_heads=4, d_ff=96, enc_layers=2, dec_layers=3, target_feature_sizes=(4, 5))
    torch.manual_seed(0)
    net = EncoderDecoder(c)
    B, S, L = 3, 11, 20
    ids, mask = torch.randint(0, 100, (B, S)), torch.ones(B, S, dtype=torch.bool)
    mask[0, 5:] = False
    targets = torch.randint(0, 50, (B, L))
    features = torch.stack([torch.arange(L) % 4, torch.arange(L) % 5], -1).expand(B, -1, -1)
    with sdpa_kernel(SDPBackend.MATH):
        counter = FlopCounterMode(display=False)
        with counter:
            logits = net(ids, mask, net.shift_right(targets), features)
        assert counter.get_total_flops() == B * sum(forward_flops(c, S, L).values())
        counter = FlopCounterMode(display=False)
        with counter:
            logits = net(ids, mask, net.shift_right(targets), features)
            F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
        assert counter.get_total_flops() == B * training_flops(c, S, L)


def test_flops_per_token_of_parti_350m_follows_6n_plus_attention():
    c = config_from_preset("parti-350m")
    per_token = flops_per_token(c)
    parts = forward_flops(c, 128, 1024)
    assert parts["encoder"] > 0 and parts["cross_attention"] > 0  # the encoder and cross-attention count
    # 6N over the decoder's and head's weights + the encoder's share + attention: ~2.4 GFLOP per token
    n_dec = c.dec_layers * (8 * c.d_model**2 + 2 * c.d_model * c.d_ff) + c.d_model * c.target_vocab_size
    assert 6 * n_dec < per_token < 6 * n_dec * 1.5
    assert math.isclose(per_token, 3 * sum(parts.values()) / 1024)
    with pytest.raises(ValueError, match="target_len"):
        forward_flops(c, 128, 0)


def test_peak_flops_table():
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA A100-SXM4-80GB", "bf16-mixed") == 312e12
    assert peak_flops("NVIDIA A100-SXM4-80GB", "32-true") in (156e12, 19.5e12)
    assert peak_flops("NVIDIA L40S") == 362e12 and peak_flops("NVIDIA L4") == 121e12
    assert peak_flops("cpu") is None and peak_flops("Some Future GPU") is None
    assert all(len(row) == 4 and row[1] >= row[2] for row in PEAK_FLOPS)


def test_throughput_rejects_bad_arguments():
    from argen.throughput import Throughput

    with pytest.raises(ValueError, match="peak_flops"):
        Throughput(peak_flops=0)
    with pytest.raises(ValueError, match="log_every_n_steps"):
        Throughput(log_every_n_steps=0)


@pytest.mark.slow
def test_slurm_sigusr1_requeue_then_sigterm_resumes_from_the_newest_checkpoint(fx, tmp_path, monkeypatch):
    """SLURM's warning signal (SIGUSR1) saves an HPC checkpoint and asks for a requeue (no scontrol
    here: Lightning logs the failure); the SIGTERM that follows a requeue writes last.ckpt, which
    ``--ckpt_path last`` resumes from."""
    from argen.train import main

    run = tmp_path / "run"
    run.mkdir()
    args = [*demo_args(fx, run, []), "--trainer.logger", "false", "--trainer.num_sanity_val_steps", "0"]
    slurm = {"SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_NAME": "argen-test",
             "SLURM_JOB_ID": "4242", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
             "SLURM_NODELIST": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "-m", "argen.train", "fit", *args, "--trainer.max_steps", "1000"],
                            cwd=ROOT, env={**train_env(fx), **slurm}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)

    def wait_for(step: int) -> int:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            try:
                now = json.loads((run / "rank0.json").read_text())["step"]
                if now >= step:
                    return now
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.1)
        raise AssertionError(proc.communicate()[0][-3000:])

    try:
        at = wait_for(3)
        proc.send_signal(signal.SIGUSR1)
        deadline = time.time() + 120
        while not list(run.glob("hpc_ckpt_*.ckpt")) and time.time() < deadline:
            time.sleep(0.1)
        wait_for(at + 2)  # still training after the requeue request
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    hpc = torch.load(next(run.glob("hpc_ckpt_*.ckpt")), weights_only=True, map_location="cpu")
    stopped = json.loads((run / "rank0.json").read_text())["step"]
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert hpc["global_step"] < last["global_step"] == stopped

    monkeypatch.syspath_prepend(str(fx / "probe"))
    cli = main(["fit", *args, "--trainer.max_steps", str(stopped + 1), "--ckpt_path", "last"])
    assert json.loads((run / "rank0.json").read_text())["first"] == stopped + 1
    assert cli.trainer.global_step == stopped + 1
