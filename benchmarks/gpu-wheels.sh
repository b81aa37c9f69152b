#!/usr/bin/env bash
# Fill a git-ignored folder (default .whl/) with the wheels argen needs on the GPU machine, which has
# no network. That machine runs CPython 3.12.3 on x86_64 manylinux with torch 2.11.0 (cu130) and the
# distributions in benchmarks/gpu-preinstalled.txt; only what argen's setup.cfg install_requires needs
# beyond those is fetched (never torch, triton or CUDA wheels), binary only, for cp312 manylinux x86_64.
# benchmarks/gpu_wheels.py walks the dependency graph (why not plain pip: see its docstring), then this
# script replaces the folder's wheels (one version of each), lists them, fails if they exceed 48 MiB
# (the working tree plus carried folders must stay under 64 MiB), and warns about unmet requirements.
#
# Usage (here, with network):     benchmarks/gpu-wheels.sh [--dest DIR]
# Then carry .whl (and data/icons-common6) to the GPU machine: benchmarks/gpu.sh installs them there.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=.whl
while [ $# -gt 0 ]; do
    case "$1" in
        --dest) dest=${2:?--dest needs a folder}; shift 2 ;;
        --dest=*) dest=${1#--dest=}; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (usage: $0 [--dest DIR])" >&2; exit 2 ;;
    esac
done
limit_mib=48
# The target's wheel tags. Its glibc is at least 2.35 (CPython 3.12.3 is Ubuntu 24.04's), so any
# manylinux_2_N up to there installs; pip prefers the earlier-listed tags.
target=(--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312)
for n in 35 34 31 28 27 24 17; do target+=(--platform "manylinux_2_${n}_x86_64"); done
target+=(--platform manylinux2014_x86_64)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
start=$SECONDS
python3 benchmarks/gpu_wheels.py resolve setup.cfg benchmarks/gpu-preinstalled.txt "$stage" -- "${target[@]}" \
    > "$stage/chosen.txt"
mapfile -t wheels < "$stage/chosen.txt"

total=0
echo "== wheels for the GPU machine (into $dest/) =="
for w in "${wheels[@]}"; do
    size=$(stat -c %s "$w")
    total=$((total + size))
    awk -v s="$size" -v w="$(basename "$w")" 'BEGIN { printf "%10.1f KiB  %s\n", s / 1024, w }'
done
awk -v n="${#wheels[@]}" -v t="$total" -v s=$((SECONDS - start)) \
    'BEGIN { printf "%d wheels, %.2f MiB in all, resolved in %d s\n", n, t / 1048576, s }'
if [ "$total" -gt $((limit_mib * 1048576)) ]; then
    echo "error: these wheels exceed ${limit_mib} MiB (the working tree plus carried folders must stay" \
        "under 64 MiB); $dest/ is left as it was" >&2
    exit 1
fi

mkdir -p "$dest"
rm -f "$dest"/*.whl  # wheels from an earlier run: exactly one version of each distribution stays
[ "${#wheels[@]}" -eq 0 ] || cp "${wheels[@]}" "$dest"/
python3 benchmarks/gpu_wheels.py check setup.cfg benchmarks/gpu-preinstalled.txt "$dest"
