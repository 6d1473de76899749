#!/usr/bin/env bash
# Makes benches/torch/.venv: PyTorch + timm from PyPI for benches/torch/step.py (issue 14's
# side-by-side with clce). Idempotent: a working venv is left as it is (--force rebuilds it).
#
#   benches/torch/setup.sh [--force]          VENV=/some/dir benches/torch/setup.sh  (elsewhere)
#
# Only PyPI is reachable here, and PyPI's torch wheel for Linux x86_64 is the CUDA build: a plain
# `pip install torch timm` also pulls triton, cuda-bindings and ~2.1 GB of nvidia-* wheels (the
# CPU-only builds live on download.pytorch.org, which we cannot reach). What we do instead
# (measured 2026-12-06, torch 2.15.0, Python 3.11):
#  1. `pip install --no-deps torch==2.15.0` (a 539 MB wheel) plus its pure-Python dependencies
#     (filelock, typing-extensions, setuptools, sympy, networkx, jinja2, fsspec) and numpy.
#  2. That torch does NOT import on a machine without CUDA: libtorch_cpu.so itself has
#     DT_NEEDED entries for libcudart.so.13 and libcupti.so.13, and libtorch_python.so needs
#     libtorch_cuda.so, which needs cuBLAS(Lt), cuDNN, cuFFT, cuSPARSE(Lt), cuFile, NCCL, NVRTC and
#     NVSHMEM ("OSError: libcudart.so.13: cannot open shared object file"). So we install exactly
#     the nvidia-*/cuda-toolkit requirements that torch's metadata lists for Linux (~2.1 GB of
#     wheels), and skip triton (only torch.compile's GPU code generation uses it) and
#     cuda-bindings (Python bindings, not imported by `import torch`). The libraries are only
#     loaded, never used: torch.cuda.is_available() is False and everything runs on the CPU.
#     Cost: ~640 MiB RSS right after `import torch, timm` (step.py reports it as
#     import_rss_bytes, and the file-backed part separately).
#  3. timm and torchvision with --no-deps (timm imports torchvision.ops; torchvision's own
#     requirement on torch would pull the CUDA set again), then timm's other, pure-Python
#     dependencies (pyyaml, huggingface_hub, safetensors) and pillow for torchvision, normally.
# pip prints "ERROR: pip's dependency resolver ... torch 2.15.0 requires triton ..., which is not
# installed" (and, before step 2, the CUDA packages); that is expected and harmless.
# Total download ~2.7 GB, venv 4.5 GB on disk, ~3 minutes here (2026-12-06).
set -euo pipefail
cd "$(dirname "$0")"
venv=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.15.0}
TORCHVISION_VERSION=${TORCHVISION_VERSION:-0.29.2}
TIMM_VERSION=${TIMM_VERSION:-1.0.31}

check() { "$venv/bin/python" -c 'import torch, timm; x = torch.randn(64, 64); (x @ x).sum().item(); print("torch", torch.__version__, "timm", timm.__version__, "cuda available:", torch.cuda.is_available())'; }

if [ "${1:-}" != --force ] && [ -x "$venv/bin/python" ] && check 2>/dev/null; then
    echo "$venv works already (--force to rebuild)"; exit 0
fi
rm -rf "$venv"
if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian/Ubuntu ship venv separately.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        rm -rf "$venv"; python3 -m venv "$venv"
    else
        echo "python3 -m venv failed: install python3-venv" >&2; exit 1
    fi
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check)

# 1. torch without its dependencies, then the pure-Python ones.
"${pip[@]}" --no-deps "torch==$TORCH_VERSION"
"${pip[@]}" filelock "typing-extensions>=4.13.0" "setuptools>=77.0.3" "sympy>=1.13.3" \
    "networkx>=2.5.1" jinja2 "fsspec>=0.8.5" numpy
# 2. The CUDA libraries that libtorch links against: torch's own Linux requirements, with their
#    pinned versions, less triton and cuda-bindings.
mapfile -t cuda < <("$venv/bin/python" - <<'EOF'
from importlib.metadata import requires
from pip._vendor.packaging.requirements import Requirement
for line in requires("torch"):
    r = Requirement(line)
    if r.marker is not None and not r.marker.evaluate({"extra": ""}):
        continue
    if r.name.startswith(("nvidia-", "cuda-toolkit")):
        print(str(r).split(";")[0].strip())
EOF
)
echo "CUDA libraries torch links against: ${cuda[*]}"
[ ${#cuda[@]} -eq 0 ] || "${pip[@]}" "${cuda[@]}"
# 3. timm and torchvision without dependencies, then their pure-Python ones.
"${pip[@]}" --no-deps "timm==$TIMM_VERSION" "torchvision==$TORCHVISION_VERSION"
"${pip[@]}" pyyaml huggingface_hub safetensors pillow
check
du -sh "$venv"
