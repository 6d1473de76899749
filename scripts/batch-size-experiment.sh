#!/usr/bin/env bash
# The paper's batch-size experiment in miniature (issue 16): CE vs SupCon vs CLCE at batch 16,
# 64 and 256 images, 3 seeds each, 8 epochs of the built-in synthetic data (10 classes, 1000
# training images; resnet-tiny from random weights at 32 px), with --micro-batch keeping the
# activation memory at 64 views whatever the batch. Prints one markdown row per (loss, batch):
# the mean and spread of the final test top-1 over the seeds.
#
#   scripts/batch-size-experiment.sh [OUT_DIR]       (release build of clce-cli first)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/batch-size-experiment}
mkdir -p "$out"
bin=target/release/clce-cli
[ -x "$bin" ] || cargo build --release -p clce-cli
data="synthetic"
common=(--model resnet-tiny --data "$data" --image-size 32 --epochs 8 --lr 5e-3
        --warmup-epochs 0.5 --no-gradcheck --device cpu --log-every 1000)
echo "| loss | batch (images) | micro-batch (views) | test top-1, mean of 3 seeds | seeds | seconds per run |"
echo "|---|---:|---:|---:|---|---:|"
for loss in ce supcon clce; do
  for batch in 16 64 256; do
    micro=()
    label="-"
    if [ $((2 * batch)) -gt 64 ]; then micro=(--micro-batch 64); label=64; fi
    tops=()
    secs=0
    for seed in 0 1 2; do
      dir="$out/$loss-b$batch-s$seed"
      rm -rf "$dir"
      start=$(date +%s)
      "$bin" finetune "${common[@]}" --loss "$loss" --batch-size "$batch" --seed "$seed" \
        "${micro[@]}" --out "$dir" >"$dir.log" 2>&1 || { echo "failed: see $dir.log" >&2; exit 1; }
      secs=$((secs + $(date +%s) - start))
      tops+=("$(python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1]) if "test_top1" in l]; print(r[-1]["test_top1"])' "$dir/metrics.jsonl")")
    done
    python3 - "$loss" "$batch" "$label" "$((secs / 3))" "${tops[@]}" <<'PY'
import sys, statistics
loss, batch, micro, secs, *tops = sys.argv[1:]
t = [100 * float(x) for x in tops]
print(f"| {loss} | {batch} | {micro} | {statistics.mean(t):.1f} ± {statistics.stdev(t):.1f} | "
      + ", ".join(f"{x:.1f}" for x in t) + f" | {secs} |")
PY
  done
done
