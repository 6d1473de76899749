#!/usr/bin/env bash
# `--distributed` on one machine (issue 20): the step time of R CPU ranks (mpirun, each rank
# RAYON_NUM_THREADS = cores / R) against one process with all the cores, for the same global
# batch, and the bytes each rank exchanges per step. Prints one markdown row per setting.
#
#   scripts/distributed-bench.sh [MODEL] [IMAGES] [SIZE] [RANKS]   (defaults: beit-tiny 64 32 2)
#
# Needs Open MPI (apt-get install -y libopenmpi-dev openmpi-bin libclang-dev); builds
# clce-cli in release mode with the `distributed` feature into target/release.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-beit-tiny}
images=${2:-64}
size=${3:-32}
ranks=${4:-2}
steps=6
cores=$(nproc)
[ -n "${CLCE_NO_BUILD:-}" ] || cargo build --release -p clce-cli --features distributed >&2
bin=target/release/clce-cli
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common=(finetune --model "$model" --image-size "$size" --batch-size "$images"
        --data "synthetic:classes=10,train=$((images * (steps + 1))),test=10"
        --epochs 1 --no-gradcheck --log-every 1 --quiet --device cpu --stop-after-steps "$steps")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none

RAYON_NUM_THREADS=$cores "$bin" "${common[@]}" --out "$out/one" || [ $? -eq 130 ]
RAYON_NUM_THREADS=$((cores / ranks > 0 ? cores / ranks : 1)) \
  mpirun --oversubscribe --bind-to none -np "$ranks" "$bin" "${common[@]}" --distributed \
  --out "$out/ranks" || [ $? -eq 130 ]

# The median step time (the first step, with its warm-up, left out), from images/s of each
# one-step logging window.
python3 - "$out" "$model" "$images" "$size" "$ranks" "$cores" <<'PY'
import json, statistics, sys
out, model, images, size, ranks, cores = sys.argv[1:]
images, ranks, cores = int(images), int(ranks), int(cores)
def step_s(run):
    rows = [json.loads(l) for l in open(f"{out}/{run}/metrics.jsonl")]
    rates = [r["images_per_s"] for r in rows if r["kind"] == "step"][1:]
    return statistics.median(images / r for r in rates)
one, many = step_s("one"), step_s("ranks")
cfg = json.load(open(f"{out}/one/config.json"))
proj, classes = cfg.get("proj_dim", 128), 10
views = 2 * images // ranks
gathered = views * (proj + classes + 1) * 4
print(f"| {model}, {images} images x {size} px | 1 process, {cores} threads: {one:.3f} s | "
      f"{ranks} ranks x {max(cores // ranks, 1)} threads: {many:.3f} s | {many / one:.2f}x | "
      f"all-gather: {gathered} B sent per rank |")
PY
# The all-reduced gradients are the trained parameters, 4 bytes each.
"$bin" plan --model "$model" --image-size "$size" --batch-size "$images" --device cpu 2>/dev/null \
  | grep -i -E "param|weights" | head -3 || true
