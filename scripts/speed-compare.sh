#!/usr/bin/env bash
# Issue 17: time of one full CLCE training step (forward of 2B views, CE + LACLN, backward,
# AdamW), clce against PyTorch on the CPU, side by side, and the ratio clce / PyTorch. By hand
# only: tests and .ci/run never call it (it takes minutes and needs the PyTorch venv).
#
#   scripts/speed-compare.sh [--rows tiny|big|all|MODEL] [--steps N] [--warmup N] [--threads N]
#                            [--rounds N] [--profile] [--clce PATH] [--baseline PATH] [--out DIR]
#
# Rows (the issue's table): beit-tiny 128 images x 32 px, resnet-tiny 128 x 32, beit-base
# 8 x 224, resnet-101 8 x 224; --rows tiny / big picks the first or last two, --rows MODEL
# one of them (default all).
# - clce: `clce-cli bench ... --json` (default target/release/clce-cli; cargo build --release),
#   with RAYON_NUM_THREADS=--threads.
# - PyTorch: benches/torch/step.py --json --no-profile --threads N with OMP_NUM_THREADS=N, in
#   the venv benches/torch/setup.sh makes (this script never installs anything: it stops and
#   says so).
# The two run alternately, row by row, --rounds times (default 1), so that both see the same
# load; the load average is recorded before each run. A row's figure is the best of its rounds'
# medians (other processes only ever slow a run down). Both count FLOPs the same way (forward
# products x 3), so their GFLOP/s compare directly. Both also report the median process CPU
# time of a step (all threads), which a busy machine stretches far less than the wall time;
# PyTorch's OpenMP threads spin-wait under the default OMP_WAIT_POLICY and that counts as CPU
# time (export OMP_WAIT_POLICY=PASSIVE to compare CPU time on a loaded machine; the script
# passes the environment on).
# --baseline PATH: a second clce-cli (an older build) that runs in the same alternation
#   (PyTorch, baseline, clce), for before/after figures of one session; the table gets its
#   columns too.
# clce's runs include --profile (a lap timer, cheap): each JSON has the time per op family.
# --profile also prints clce's table for each row (to DIR/<row>.clce.txt, one extra run;
#   with --baseline, the baseline's too, to DIR/<row>.baseline.txt).
# Raw outputs go to DIR (default runs/speed-compare-<UTC time>/, ignored by git); the table goes
# to stdout and DIR/table.md.
set -euo pipefail
cd "$(dirname "$0")/.."

rows=all steps=3 warmup=1 threads=2 rounds=1 profile=0 clce=target/release/clce-cli baseline="" out=""
while [ $# -gt 0 ]; do
    case $1 in
        --rows) rows=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --profile) profile=1; shift ;;
        --clce) clce=$2; shift 2 ;;
        --baseline) baseline=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument $1 (--help)" >&2; exit 2 ;;
    esac
done
case $rows in
    tiny) table=("beit-tiny 128 32" "resnet-tiny 128 32") ;;
    big) table=("beit-base 8 224" "resnet-101 8 224") ;;
    all) table=("beit-tiny 128 32" "resnet-tiny 128 32" "beit-base 8 224" "resnet-101 8 224") ;;
    beit-tiny) table=("beit-tiny 128 32") ;;
    resnet-tiny) table=("resnet-tiny 128 32") ;;
    beit-base) table=("beit-base 8 224") ;;
    resnet-101) table=("resnet-101 8 224") ;;
    *) echo "--rows takes tiny, big, all or one model of the four, not $rows" >&2; exit 2 ;;
esac
py=benches/torch/.venv/bin/python
if ! "$py" -c 'import torch, timm' 2>/dev/null; then
    echo "no working PyTorch venv at benches/torch/.venv: run benches/torch/setup.sh first" >&2
    exit 1
fi
if [ ! -x "$clce" ]; then
    echo "$clce not found: build it with cargo build --release (or pass --clce PATH)" >&2
    exit 1
fi
if [ -n "$baseline" ] && [ ! -x "$baseline" ]; then
    echo "--baseline $baseline is not an executable clce-cli" >&2
    exit 1
fi
out=${out:-runs/speed-compare-$(date -u +%Y%m%dT%H%M%S)}
mkdir -p "$out"
: > "$out/runs.jsonl"
load() { cut -d' ' -f1 /proc/loadavg; }

# One run: engine, row, round; appends {"engine", "row", "round", "load", ...result} to runs.jsonl.
record() {
    local engine=$1 tag=$2 round=$3 file=$4 load_before=$5
    python3 - "$engine" "$tag" "$round" "$file" "$load_before" >>"$out/runs.jsonl" <<'PY'
import json, sys
engine, tag, rnd, path, load = sys.argv[1:]
r = {}
for line in open(path):
    line = line.strip()
    if line.startswith("{"):
        try:
            r = json.loads(line)
        except ValueError:
            pass
r.update(engine=engine, row=tag, round=int(rnd), load=float(load))
print(json.dumps(r))
PY
}

for round in $(seq 1 "$rounds"); do
    for row in "${table[@]}"; do
        read -r model batch px <<<"$row"
        tag="$model-b$batch-$px"
        echo "== round $round: $tag (load $(load))" >&2
        l=$(load)
        OMP_NUM_THREADS=$threads "$py" benches/torch/step.py --model "$model" --batch-size "$batch" \
            --image-size "$px" --steps "$steps" --warmup "$warmup" --threads "$threads" \
            --no-profile --json >"$out/$tag.torch.$round.json" 2>"$out/$tag.torch.$round.err" \
            || echo "PyTorch failed on $tag: see $out/$tag.torch.$round.err" >&2
        record torch "$tag" "$round" "$out/$tag.torch.$round.json" "$l"
        engines=(clce)
        [ -z "$baseline" ] || engines=(baseline clce)
        for engine in "${engines[@]}"; do
            bin=$clce
            [ "$engine" = clce ] || bin=$baseline
            l=$(load)
            RAYON_NUM_THREADS=$threads "$bin" bench --model "$model" --batch-size "$batch" \
                --image-size "$px" --steps "$steps" --warmup "$warmup" --json --profile \
                >"$out/$tag.$engine.$round.json" 2>"$out/$tag.$engine.$round.err" \
                || echo "$engine failed on $tag: see $out/$tag.$engine.$round.err" >&2
            record "$engine" "$tag" "$round" "$out/$tag.$engine.$round.json" "$l"
        done
    done
done
if [ "$profile" = 1 ]; then
    for row in "${table[@]}"; do
        read -r model batch px <<<"$row"
        tag="$model-b$batch-$px"
        echo "== profile: $tag (load $(load))" >&2
        RAYON_NUM_THREADS=$threads "$clce" bench --model "$model" --batch-size "$batch" \
            --image-size "$px" --steps "$steps" --warmup "$warmup" --profile \
            >"$out/$tag.clce.txt" 2>&1 || echo "clce --profile failed on $tag" >&2
        [ -z "$baseline" ] || RAYON_NUM_THREADS=$threads "$baseline" bench --model "$model" \
            --batch-size "$batch" --image-size "$px" --steps "$steps" --warmup "$warmup" \
            --profile >"$out/$tag.baseline.txt" 2>&1 || echo "baseline --profile failed" >&2
    done
fi

python3 - "$out/runs.jsonl" "$threads" "${table[@]}" <<'PY' | tee "$out/table.md"
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
threads = sys.argv[2]
engines = [e for e in ("baseline", "clce") if any(r["engine"] == e for r in runs)]
head = "| model, batch (images), px | PyTorch step | PyTorch CPU-s |"
rule = "|---|---:|---:|"
for e in engines:
    head += f" {e} step | {e} / PyTorch | {e} CPU-s | {e} / PyTorch (CPU) | {e} GFLOP/s |"
    rule += "---:|---:|---:|---:|---:|"
print(head + " PyTorch GFLOP/s | loads |")
print(rule + "---:|---|")
sec = lambda r: f"{r['median_step_s']:.3f} s" if r else "n/a"
cpu = lambda r: f"{r['median_cpu_s']:.3f}" if r and r.get("median_cpu_s") else "n/a"
gf = lambda r: f"{r['flops_per_s'] / 1e9:.1f}" if r and r.get("flops_per_s") else "n/a"
def ratio(a, b, key):
    return f"{a[key] / b[key]:.2f}x" if a and b and a.get(key) and b.get(key) else "n/a"
for row in sys.argv[3:]:
    model, batch, px = row.split()
    tag = f"{model}-b{batch}-{px}"
    best = {}
    for r in runs:
        if r["row"] == tag and r.get("median_step_s"):
            e = r["engine"]
            if e not in best or r["median_step_s"] < best[e]["median_step_s"]:
                best[e] = r
    t = best.get("torch")
    line = f"| {model}, {batch}, {px} | {sec(t)} | {cpu(t)} |"
    for e in engines:
        c = best.get(e)
        line += (f" {sec(c)} | {ratio(c, t, 'median_step_s')} | {cpu(c)} "
                 f"| {ratio(c, t, 'median_cpu_s')} | {gf(c)} |")
    loads = ", ".join(f"{k} {best[k]['load']:.1f}" for k in ["torch"] + engines if k in best)
    print(line + f" {gf(t)} | {loads} |")
print(f"\n{threads} threads each; best of each engine's medians over the rounds (CPU-s: the "
      f"same run's median process CPU time per step, all threads).")
PY
echo "raw outputs: $out" >&2
