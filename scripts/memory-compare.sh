#!/usr/bin/env bash
# Issue 14: peak memory (and step time) of one full CLCE training step, clce vs PyTorch, on the
# CPU with 2 threads, and a markdown table of both. By hand only: tests and .ci/run never call
# it (it takes minutes and needs the PyTorch venv).
#
#   scripts/memory-compare.sh [--steps N] [--warmup N] [--threads N] [--clce PATH]
#                             [--torch-jsonl FILE] [--out DIR]
#
# Rows: beit-base 8 images (16 views) x 224 with and without activation checkpointing,
# resnet-101 8 x 224 with and without.
# - PyTorch: benches/torch/step.py --json (its venv comes from benches/torch/setup.sh, which
#   this script never runs: it stops and says so). --torch-jsonl FILE takes the PyTorch rows
#   from a file step.py wrote instead of running it (e.g. benches/torch/results-*.jsonl).
# - clce: `clce-cli bench --model M --batch-size B --image-size S [--checkpoint-activations]
#   --json` (default target/release/clce-cli; build it with cargo build --release -p clce-cli),
#   which prints median_step_s and peak_bytes (peak live tensor bytes). Its peak RSS is the
#   "Maximum resident set size" of /usr/bin/time -v (from Debian's `time` package), or, where
#   that is missing, ru_maxrss of the child read by python3; a peak_rss_bytes in its JSON is
#   used only if neither works. Without the binary the clce columns say n/a.
# Raw outputs go to DIR (default runs/memory-compare-<UTC time>/, ignored by git); the table
# goes to stdout and DIR/table.md.
#
# Columns: PyTorch runtime RSS is the RSS after importing torch/timm and building the model and
# AdamW, before the first step; "activation RSS" = peak RSS - runtime RSS, which also holds the
# gradients and AdamW's two moments (PyTorch allocates those in the first step: 3 x the
# parameter bytes, ~1 GiB for BEiT-base), listed in the next column. PyTorch's RSS includes
# ~640 MiB of libraries and interpreter (PyPI's CUDA wheel maps its CUDA libraries even on
# the CPU: import_rss_bytes in the JSON). ratio = clce peak RSS / PyTorch peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."

steps=3 warmup=1 threads=2 clce=target/release/clce-cli torch_jsonl="" out=""
while [ $# -gt 0 ]; do
    case $1 in
        --steps) steps=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --clce) clce=$2; shift 2 ;;
        --torch-jsonl) torch_jsonl=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument $1 (--help)" >&2; exit 2 ;;
    esac
done
out=${out:-runs/memory-compare-$(date -u +%Y%m%dT%H%M%S)}
mkdir -p "$out"
py=benches/torch/.venv/bin/python
if [ -z "$torch_jsonl" ] && ! "$py" -c 'import torch, timm' 2>/dev/null; then
    echo "no working PyTorch venv at benches/torch/.venv: run benches/torch/setup.sh first" >&2
    exit 1
fi
[ -x "$clce" ] || echo "warning: $clce not found (cargo build --release -p clce-cli): clce columns n/a" >&2

rows=("beit-base 8 224 0" "beit-base 8 224 1" "resnet-101 8 224 0" "resnet-101 8 224 1")
: > "$out/torch.jsonl"
: > "$out/clce.jsonl"
for row in "${rows[@]}"; do
    read -r model batch px ckpt <<<"$row"
    flag=() tag="$model-b$batch-$px"
    if [ "$ckpt" = 1 ]; then flag=(--checkpoint-activations) tag+=-ckpt; fi
    echo "== $tag" >&2

    if [ -n "$torch_jsonl" ]; then
        python3 - "$torch_jsonl" "$model" "$batch" "$px" "$ckpt" >>"$out/torch.jsonl" <<'EOF'
import json, sys
path, model, batch, px, ckpt = sys.argv[1:]
for line in open(path):
    r = json.loads(line)
    if (r["model"], r["batch_size"], r["image_size"], r["checkpoint_activations"]) == \
            (model, int(batch), int(px), ckpt == "1"):
        print(json.dumps(r)); break
else:
    print(json.dumps({"model": model, "missing": True}))
EOF
    else
        OMP_NUM_THREADS=$threads "$py" benches/torch/step.py --model "$model" --batch-size "$batch" \
            --image-size "$px" "${flag[@]}" --steps "$steps" --warmup "$warmup" \
            --threads "$threads" --json >>"$out/torch.jsonl" 2>"$out/$tag.torch.err"
    fi

    if [ -x "$clce" ]; then
        cmd=("$clce" bench --model "$model" --batch-size "$batch" --image-size "$px" "${flag[@]}" --json)
        rc=0
        if [ -x /usr/bin/time ]; then
            /usr/bin/time -v -o "$out/$tag.clce.time" "${cmd[@]}" >"$out/$tag.clce.json" \
                2>"$out/$tag.clce.err" || rc=$?
            rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/$tag.clce.time")
        else
            rss_kib=$(python3 -c 'import resource, subprocess, sys
with open(sys.argv[1], "w") as o, open(sys.argv[2], "w") as e:
    rc = subprocess.run(sys.argv[3:], stdout=o, stderr=e).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(rc)' \
                "$out/$tag.clce.json" "$out/$tag.clce.err" "${cmd[@]}") || rc=$?
        fi
        [ "$rc" = 0 ] || echo "clce-cli bench failed for $tag (rc $rc): see $out/$tag.clce.err" >&2
        # The last JSON object clce printed, with the measured RSS added.
        python3 - "$out/$tag.clce.json" "${rss_kib:-}" "$rc" >>"$out/clce.jsonl" <<'EOF'
import json, sys
path, rss_kib, rc = sys.argv[1], sys.argv[2], sys.argv[3]
r = {}
for line in open(path):
    line = line.strip()
    if line.startswith("{"):
        try:
            r = json.loads(line)
        except ValueError:
            pass
if rc == "0" and rss_kib:
    r["measured_peak_rss_bytes"] = int(rss_kib) * 1024
r["rc"] = int(rc)
print(json.dumps(r))
EOF
    else
        echo '{"missing": true}' >>"$out/clce.jsonl"
    fi
done

python3 - "$out/torch.jsonl" "$out/clce.jsonl" "${rows[@]}" <<'EOF' | tee "$out/table.md"
import json, sys
torch_rows = [json.loads(l) for l in open(sys.argv[1])]
clce_rows = [json.loads(l) for l in open(sys.argv[2])]
mib = lambda b: "n/a" if b is None else f"{b / 2**20:,.0f} MiB"
sec = lambda s: "n/a" if s is None else f"{s:.2f} s"
print("| model | batch (views) | px | checkpointing | clce peak RSS | clce peak tensor bytes "
      "| clce step | PyTorch peak RSS | PyTorch runtime RSS | PyTorch activation RSS (peak − runtime) "
      "| of which grads + AdamW state | PyTorch peak tensor bytes | PyTorch step | ratio (clce / PyTorch peak RSS) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for row, t, c in zip(sys.argv[3:], torch_rows, clce_rows):
    model, batch, px, ckpt = row.split()
    c_rss = c.get("measured_peak_rss_bytes", c.get("peak_rss_bytes"))
    t_peak, t_run = t.get("peak_rss_bytes"), t.get("runtime_rss_bytes")
    act = t_peak - t_run if t_peak is not None and t_run is not None else None
    state = (t["grad_bytes"] + t["optimizer_state_bytes"]) if "grad_bytes" in t else None
    ratio = f"{c_rss / t_peak:.2f}" if c_rss and t_peak else "n/a"
    print(f"| {model} | {batch} ({2 * int(batch)}) | {px} | {'yes' if ckpt == '1' else 'no'} "
          f"| {mib(c_rss)} | {mib(c.get('peak_bytes'))} | {sec(c.get('median_step_s'))} "
          f"| {mib(t_peak)} | {mib(t_run)} | {mib(act)} | {mib(state)} "
          f"| {mib(t.get('peak_bytes'))} | {sec(t.get('median_step_s'))} | {ratio} |")
EOF
echo "raw outputs: $out" >&2
