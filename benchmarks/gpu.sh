#!/usr/bin/env bash
# argen on one CUDA GPU, end to end, in one prepared pass of at most ~6 minutes on an H100/H200:
#   - install the carried wheels (benchmarks/gpu-wheels.sh filled .whl/ beforehand) and import everything;
#   - `python -m argen.train fit` of tokenizer/demo.yaml, train/demo.yaml and train/iconshop-demo.yaml,
#     bf16-mixed on the GPU, a few dozen steps each, eager and compiled;
#   - sampling: eager vs compiled (CUDA graphs) tokens equal at fp32, bf16 logits close; the sample CLI;
#   - parti-350m under the FSDP recipe on the one GPU: wrapping, activation checkpointing, sharded
#     checkpoint, resume, export;
#   - parti-350m bf16 training MFU (eager vs compiled; Apex vs native when apex imports) and the decode
#     bandwidth roofline (16 prompts x CFG = 32 rows, eager vs compiled), each with the GPU to itself.
# One "RESULT <check> PASS|FAIL|SKIP <s> <what it found>" line per check, then a Markdown table;
# a failed check does not stop the others. The report (gpu-check.json, gpu-check.log) goes to $OUT
# when set, else runs/gpu-check.
#
# Usage:  benchmarks/gpu.sh                      # everything (needs .whl/ and data/icons-common6 carried)
#         benchmarks/gpu.sh --only sampling,mfu  # rerun chosen checks after a fix
#         benchmarks/gpu.sh --device cpu         # the same checks at toy sizes, on a machine without a GPU
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 WANDB_MODE=offline WANDB_SILENT=true
PY=${PYTHON:-python3}

# The GPU image lacks some of argen's requirements and has no network: install the wheels carried in
# .whl/ (benchmarks/gpu-wheels.sh) into a folder of their own, each only where the image lacks that
# distribution or holds a version some requirement rules out, unless everything already imports.
if ! "$PY" -c "import vector_quantize_pytorch, webdataset, wandb, jsonargparse, defusedxml, resvg_py" 2>/dev/null; then
  start=$(date +%s)
  mapfile -t wanted < <("$PY" benchmarks/gpu_wheels.py missing setup.cfg .whl)
  if [ "${#wanted[@]}" -gt 0 ] && "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target /tmp/argen-site "${wanted[@]}"; then
    echo "RESULT install PASS $(( $(date +%s) - start )).0s ${#wanted[@]} carried wheels into /tmp/argen-site"
    export PYTHONPATH=/tmp/argen-site
  else
    echo "RESULT install FAIL $(( $(date +%s) - start )).0s argen's requirements do not import and the" \
      "wheels in .whl/ (benchmarks/gpu-wheels.sh) did not install"
    exit 1
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec "$PY" benchmarks/gpu_check.py ${OUT:+--report "$OUT"} "$@"
