#!/usr/bin/env bash
# Issue 15's accuracy evidence: final test top-1 of `finetune --precision f16` against f32,
# same seeds, same settings, on the built-in synthetic set (from random weights: no download).
# By hand only (minutes): tests and .ci/run never call it.
#
#   scripts/f16-accuracy.sh [--clce PATH] [--model beit-tiny] [--epochs N] [--seeds "0 1 2"]
#                           [--data SPEC] [--image-size PX] [--threads N] [--out DIR]
#
# Prints one row per seed (f32 top-1, f16 top-1, difference, f16 skipped steps) and the mean
# difference in points; raw run folders and the table go to DIR (default
# runs/f16-accuracy-<UTC time>/, ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."

clce=target/debug/clce-cli model=beit-tiny epochs=10 seeds="0 1 2" data=synthetic size=32
threads=1 out=""
while [ $# -gt 0 ]; do
    case $1 in
        --clce) clce=$2; shift 2 ;;
        --model) model=$2; shift 2 ;;
        --epochs) epochs=$2; shift 2 ;;
        --seeds) seeds=$2; shift 2 ;;
        --data) data=$2; shift 2 ;;
        --image-size) size=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
[ -x "$clce" ] || { echo "$clce not found: cargo build -p clce-cli (or pass --clce)" >&2; exit 1; }
out=${out:-runs/f16-accuracy-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"

# The last epoch line's test_top1, and the last skipped_steps written (absent: 0).
final() {
    python3 - "$1/metrics.jsonl" <<'PY'
import json, sys
top1, skipped = None, 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["kind"] == "epoch":
        top1 = r["test_top1"]
    skipped = r.get("skipped_steps", skipped)
print(f"{100 * top1:.2f} {skipped}")
PY
}

{
    echo "# $model on $data at ${size}px, $epochs epochs, batch 32, lr 2e-3, $(date -u +%FT%TZ)"
    echo "# clce: $clce ($(git rev-parse --short HEAD)), RAYON_NUM_THREADS=$threads, load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "| seed | f32 top-1 % | f16 top-1 % | f16 - f32 | f16 skipped steps |"
    echo "|---|---|---|---|---|"
} | tee "$out/table.md"
sum=0
for seed in $seeds; do
    for precision in f32 f16; do
        RAYON_NUM_THREADS=$threads "$clce" finetune --model "$model" --data "$data" \
            --image-size "$size" --epochs "$epochs" --batch-size 32 --lr 2e-3 \
            --warmup-epochs 1 --seed "$seed" --precision "$precision" --device cpu \
            --no-gradcheck --quiet --out "$out/$precision-seed$seed" >"$out/$precision-seed$seed.log" 2>&1
    done
    read -r a _ < <(final "$out/f32-seed$seed")
    read -r b skipped < <(final "$out/f16-seed$seed")
    d=$(python3 -c "print(f'{$b - $a:+.2f}')")
    sum=$(python3 -c "print($sum + $b - $a)")
    echo "| $seed | $a | $b | $d | $skipped |" | tee -a "$out/table.md"
done
n=$(echo $seeds | wc -w)
python3 -c "print(f'mean f16 - f32: {$sum / $n:+.2f} points over $n seeds')" | tee -a "$out/table.md"
