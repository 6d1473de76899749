#!/usr/bin/env bash
# Everything to measure on a real GPU (an H100/H200), in one command and one report:
#  - `clce-cli bench --device gpu --json` training steps: beit-base at 224 px with 64 and 128
#    images, with and without activation checkpointing (and --precision f16 once `bench` has
#    it), resnet-101 at 64 images; each with its GPU counters (dispatches, readbacks, ...);
#  - the PyTorch twin of each step on the same GPU (benches/torch/step.py --device cuda: TF32
#    off for f32, autocast + GradScaler for f16);
#  - the benches gpu_matmul (f32 and f16 storage), gpu_conv2d, attention and lacln at full size
#    (CLCE_BENCH_FULL=1).
# The report (OUT, default gpu-bench-<host>-<UTC time>.txt) holds the raw output and ends with
# one table of the training steps (clce against PyTorch).
#
#   scripts/gpu-bench.sh [OUT]         build (needs cargo) and run
#   scripts/gpu-bench.sh --build-only  build release binaries into target/gpu-bench/ and stop
#   CLCE_GPU_BENCH_TINY=1 scripts/gpu-bench.sh [OUT]
#                                      dry run: tiny models at 32 px and 2 images, the
#                                      criterion benches only listed; runs on lavapipe
#                                      (software adapters are refused otherwise)
#
# The machine that runs it needs no network and no cargo: build here with --build-only, take
# the repository with target/gpu-bench/ there and run the script; it uses those binaries.
# wgpu needs the Vulkan loader (libvulkan.so.1): where it is missing and cannot be installed,
# put its .deb in .gl/ and the script unpacks it. Each run has a time limit (CLCE_STEP_LIMIT_S,
# default 120 s), so one slow configuration cannot use up a lease; budget about 8 minutes on an
# H100 for the whole script.
set -euo pipefail
cd "$(dirname "$0")/.."
benches="gpu_matmul gpu_conv2d attention lacln"
bin=target/gpu-bench
tiny=${CLCE_GPU_BENCH_TINY:-0}
limit=${CLCE_STEP_LIMIT_S:-120}

if command -v cargo >/dev/null; then
    cargo build --release -p clce-cli --bin clce-cli
    cargo bench --no-run $(printf -- '--bench %s ' $benches)
    mkdir -p $bin
    cp target/release/clce-cli $bin/clce-cli
    for b in $benches; do
        cp "$(ls -t target/release/deps/$b-* | grep -v '\.d$' | head -1)" $bin/$b
    done
fi
[ "${1:-}" = --build-only ] && { echo "built: $(ls $bin | tr '\n' ' ')"; exit 0; }
for b in clce-cli $benches; do
    [ -x $bin/$b ] || { echo "missing $bin/$b: run scripts/gpu-bench.sh --build-only where cargo is" >&2; exit 1; }
done

if ! ldconfig -p | grep libvulkan.so.1 >/dev/null; then
    ls .gl/*.deb >/dev/null 2>&1 || { echo "no Vulkan loader: apt-get install libvulkan1, or put libvulkan1's .deb in .gl/" >&2; exit 1; }
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
# Containers often mount the NVIDIA driver without registering its Vulkan ICD.
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f $icd ]; then export VK_DRIVER_FILES=$icd; fi
# gpu:0 is the best adapter; a software one there means the NVIDIA driver was not found.
if [ "$tiny" != 1 ] && $bin/clce-cli devices 2>/dev/null | grep '^gpu:0.*software' >/dev/null; then
    echo "gpu:0 is a software adapter: the NVIDIA Vulkan driver was not found (set VK_DRIVER_FILES to its ICD json)" >&2
    $bin/clce-cli devices >&2 || true
    exit 1
fi

out=${1:-gpu-bench-$(hostname)-$(date -u +%Y%m%dT%H%M).txt}
steps=$(mktemp)
trap 'rm -f "$steps"' EXIT
if [ "$tiny" = 1 ]; then
    beit=beit-tiny; resnet=resnet-tiny; side=32; sizes="2"; small=2
else
    beit=beit-base; resnet=resnet-101; side=224; sizes="64 128"; small=64
fi
# `bench --precision` arrives with mixed precision (issue 15); f16 steps run once it exists.
precisions=f32
if $bin/clce-cli bench --help | grep -- '--precision' >/dev/null; then precisions="f32 f16"; fi
has_cuda=0
if python3 -c 'import torch, timm, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    has_cuda=1
fi

# One training step configuration: clce, then PyTorch where CUDA is (one JSON line each).
step() { # model images checkpointing(0/1) precision
    local model=$1 images=$2 ckpt=$3 precision=$4
    local flags=(--model "$model" --batch-size "$images" --image-size "$side")
    [ "$ckpt" = 1 ] && flags+=(--checkpoint-activations)
    local cflags=("${flags[@]}")
    [ "$precision" = f16 ] && cflags+=(--precision f16)
    echo "=== clce-cli bench ${cflags[*]}"
    if timeout "$limit" $bin/clce-cli bench --device gpu --steps 3 --warmup 1 --json "${cflags[@]}" >"$steps.one"; then
        cat "$steps.one"; python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["engine"]="clce"; d["precision"]=sys.argv[2]; print(json.dumps(d))' "$steps.one" "$precision" >>"$steps"
    else
        echo "(failed or over ${limit} s)"
    fi
    if [ "$has_cuda" = 1 ]; then
        echo "=== torch step.py --device cuda --precision $precision ${flags[*]}"
        timeout "$limit" python3 benches/torch/step.py --device cuda --precision "$precision" --steps 3 --warmup 1 --json "${flags[@]}" | tee -a "$steps" || echo "(failed or over ${limit} s)"
    fi
}

{
    date -u; git rev-parse HEAD 2>/dev/null || true
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv 2>/dev/null || true
    $bin/clce-cli devices || true
    [ "$has_cuda" = 1 ] || echo "(no CUDA PyTorch with timm here: the PyTorch twin is skipped)"
    for images in $sizes; do
        for precision in $precisions; do
            step $beit "$images" 0 "$precision"
            step $beit "$images" 1 "$precision"
        done
    done
    step $resnet $small 0 f32
    for b in $benches; do
        echo "=== $b"
        if [ "$tiny" = 1 ]; then
            $bin/$b --bench --list
        else
            CLCE_BENCH_FULL=1 timeout "$limit" $bin/$b --bench || echo "(failed or over ${limit} s)"
        fi
    done
    echo "=== training steps (median of 3 after 1 warm-up)"
    python3 scripts/gpu-bench-table.py "$steps"
} 2>&1 | tee "$out"
echo "written: $out"
