"""Image tokenizer throughput: encode and decode images/s, ViT-VQGAN Small preset at 256 px.

    python benchmarks/tokenizer.py [--batch 4] [--repeats 5] [--threads 2] [--json]

Random weights (speed does not depend on training). CPU in float32; on a GPU also bf16 autocast.
The peer, timed in the same run on the same batch, is Hugging Face ``transformers``' ``ViTModel``
with the encoder's dims (8 blocks, 512 wide, 2048 MLP, 8 heads, patch 8): ``encode / hf_vit`` near
1.0 means the encoder costs what a plain ViT of its size costs and the quantizer adds little.
Medians over ``--repeats`` after one warm-up; the last line with ``--json`` is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from argen.vqgan import VQGAN, config_from_preset


def timed(fn, repeats: int, sync) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def hf_vit(device: torch.device):
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, intermediate_size=2048,
                    image_size=256, patch_size=8, attn_implementation="sdpa")
    return ViTModel(cfg, add_pooling_layer=False).to(device).eval()


def bench(device: torch.device, dtype: torch.dtype | None, batch: int, repeats: int) -> dict:
    config = config_from_preset("small", image_size=256, patch_size=8, kmeans_init=False)
    model = VQGAN(config).to(device).eval()
    images = torch.rand(batch, 3, 256, 256, device=device) * 2 - 1
    peer = hf_vit(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
    with torch.no_grad(), autocast:
        ids = model.quantize(images)[1]
        enc = timed(lambda: model.quantize(images), repeats, sync)
        dec = timed(lambda: model.decode_ids(ids), repeats, sync)
        vit = timed(lambda: peer(pixel_values=images), repeats, sync)
    return {"device": device.type, "dtype": str(dtype or torch.float32).replace("torch.", ""), "batch": batch,
            "encode_img_s": batch / enc, "decode_img_s": batch / dec, "hf_vit_img_s": batch / vit,
            "encode_vs_hf_vit": vit / enc}


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--gpu-batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rows = [bench(torch.device("cpu"), None, a.batch, a.repeats)]
    if torch.cuda.is_available():
        rows.append(bench(torch.device("cuda"), torch.bfloat16, a.gpu_batch, a.repeats))
    machine = f"{cpu_name()}, {a.threads} threads"
    if torch.cuda.is_available():
        machine += f", {torch.cuda.get_device_name()}"
    print(f"ViT-VQGAN Small, 256 px, patch 8 (1024 tokens), {machine}; medians of {a.repeats}")
    print(f"{'device':>6} {'dtype':>8} {'batch':>5} {'encode img/s':>13} {'decode img/s':>13} "
          f"{'HF ViT img/s':>13} {'encode/HF':>9}")
    for r in rows:
        print(f"{r['device']:>6} {r['dtype']:>8} {r['batch']:>5} {r['encode_img_s']:>13.2f} "
              f"{r['decode_img_s']:>13.2f} {r['hf_vit_img_s']:>13.2f} {r['encode_vs_hf_vit']:>9.2f}")
    if a.json:
        print(json.dumps({"machine": machine, "results": rows}))


if __name__ == "__main__":
    main()
