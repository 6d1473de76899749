#!/usr/bin/env bash
# The GPU benches at full size (CLCE_BENCH_FULL=1) on a real GPU such as an H100/H200:
# gpu_matmul (f32 and f16 storage), gpu_conv2d, attention and lacln, all output in one file.
#
#   scripts/gpu-bench.sh [OUT]         build (needs cargo) and run; OUT defaults to
#                                      gpu-bench-<host>-<UTC time>.txt
#   scripts/gpu-bench.sh --build-only  build the bench binaries into target/gpu-bench/ and stop
#
# On a machine without cargo, build here with --build-only, copy the repository with
# target/gpu-bench/ there and run the script: it uses those binaries. wgpu needs the Vulkan
# loader (libvulkan.so.1); where it is missing and cannot be installed (apt-get install
# libvulkan1), put its .deb in .gl/ and the script unpacks it.
set -euo pipefail
cd "$(dirname "$0")/.."
benches="gpu_matmul gpu_conv2d attention lacln"
bin=target/gpu-bench

if command -v cargo >/dev/null; then
    cargo bench --no-run $(printf -- '--bench %s ' $benches)
    mkdir -p $bin
    for b in $benches; do
        cp "$(ls -t target/release/deps/$b-* | grep -v '\.d$' | head -1)" $bin/$b
    done
fi
[ "${1:-}" = --build-only ] && exit 0

if ! ldconfig -p | grep -q libvulkan.so.1; then
    ls .gl/*.deb >/dev/null 2>&1 || { echo "no Vulkan loader: apt-get install libvulkan1, or put libvulkan1's .deb in .gl/" >&2; exit 1; }
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
# Containers often mount the NVIDIA driver without registering its Vulkan ICD.
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f $icd ]; then export VK_DRIVER_FILES=$icd; fi

out=${1:-gpu-bench-$(hostname)-$(date -u +%Y%m%dT%H%M).txt}
export CLCE_BENCH_FULL=1
{
    date -u; git rev-parse HEAD 2>/dev/null || true
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv 2>/dev/null || true
    for b in $benches; do
        echo "=== $b"
        $bin/$b --bench
    done
} 2>&1 | tee "$out"
echo "written: $out"
