#!/usr/bin/env bash
# GPU sampling check (issue 5), one script, well under 8 minutes on one H100/A100:
# tokens/s of the parti-350m preset (random weights), 16 prompts x CFG = 32 rows, bf16, 256 new tokens,
# eager vs torch.compile (CUDA graphs), and each one's share of the memory-bandwidth roofline
# (weights + KV bytes read per step / step time / measured device copy bandwidth). Goal: >= 50% compiled.
# Usage: benchmarks/gpu.sh [extra args for benchmarks/sampling.py roofline]
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')"
nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv,noheader || true
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
timeout 240 python benchmarks/sampling.py roofline --preset parti-350m --device cuda --dtype bfloat16 \
    --prompts 16 --new-tokens 256 --repeats 3 --json "$@"

# -- training (issue 8): tokens/s and MFU of one parti-350m training step, bf16 autocast (Lightning's
# bf16-mixed), 32 x (128 text + 1024 image tokens) per step, eager vs torch.compile, and Apex's fused
# norms + FusedAdam vs native (eager) when apex imports (NGC image). Goal: MFU >= 45% on an H100. Budget ~3.5 min.
echo "== training: parti-350m bf16, eager vs compiled (benchmarks/train.py mfu) =="
timeout 210 python benchmarks/train.py mfu --preset parti-350m --device cuda --dtype bfloat16 \
    --batch 32 --text-len 128 --steps 20 --warmup 5 --variants eager,compiled --apex-too --json
