#!/usr/bin/env bash
# Issue 19: how often the first-step gradient check of `clce-cli finetune` refuses a correct
# run (it must never), and how often it catches a planted wrong backward rule (it must always:
# the hidden flag --inject-wrong-relu-backward scales relu's gradient by 1.5).
# By hand only: tests and .ci/run never call it (it takes an hour on two cores).
#
#   scripts/gradcheck-sweep.sh FOLDER [SEEDS] [WRONG_SEEDS] [CLI]
#
# FOLDER: an ImageFolder (make one with scripts/digits-imagefolder.py). Grid: seeds 0..SEEDS-1
# (default 20) x {resnet-tiny, beit-tiny} x {synthetic, imagefolder:FOLDER} x {cpu, gpu}, each
# `finetune --image-size 32 --batch-size 64 --stop-after-steps 0 --json` (stops right after
# the check), and the same with
# the planted bug for seeds 0..WRONG_SEEDS-1 (default 5). CLI defaults to target/debug/clce-cli.
# Prints one line per run and the counts; rows go to runs/gradcheck-sweep-<time>.tsv.
set -u
folder=${1:?usage: scripts/gradcheck-sweep.sh FOLDER [SEEDS] [WRONG_SEEDS] [CLI]}
seeds=${2:-20}
wrong_seeds=${3:-5}
cli=${4:-target/debug/clce-cli}
out=runs/gradcheck-sweep-$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$out"
tsv=$out/results.tsv
printf 'planted\tmodel\tdata\tdevice\tseed\texit\tpassed\tmax_device_error\tmax_difference_error\tkinked\tcoords\n' >"$tsv"

# The gradcheck event (the first JSON line) as passed, max errors, kinked and coordinates.
summarise='
import json, math, sys
try:
    e = json.loads(sys.stdin.read())
except Exception:
    print("none\tnan\tnan\t0\t0")
    sys.exit()
rows = e.get("rows", [])
def worst(key):
    vals = [math.nan if r[key] is None else r[key] for r in rows]
    return max(vals) if vals else math.nan
kinked = sum(r["kinked"] for r in rows)
coords = sum(r["coords"] for r in rows)
print("%s\t%.3e\t%.3e\t%d\t%d" % (e.get("passed"), worst("device_error"), worst("difference_error"), kinked, coords))
'

one() { # planted model data device seed
  local planted=$1 model=$2 data=$3 device=$4 seed=$5 extra=()
  [ "$planted" = yes ] && extra=(--inject-wrong-relu-backward)
  local dir=$out/run-$planted-$model-${data%%:*}-$device-$seed
  local json
  json=$("$cli" finetune --model "$model" --data "$data" --image-size 32 --batch-size 64 \
    --seed "$seed" --device "$device" --stop-after-steps 0 --json --out "$dir" "${extra[@]}" \
    2>"$dir.stderr")
  local code=$?
  # The gradcheck event is the first JSON line; summarise it with python3 (no jq here).
  local row
  row=$(printf '%s\n' "$json" | head -1 | python3 -c "$summarise")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$planted" "$model" "${data%%:*}" "$device" "$seed" "$code" "$row" | tee -a "$tsv"
  rm -rf "$dir"
}

# Seed by seed, so that a sweep cut short still covers every combination.
for ((seed = 0; seed < seeds || seed < wrong_seeds; seed++)); do
  for planted in no yes; do
    [ "$planted" = no ] && ((seed >= seeds)) && continue
    [ "$planted" = yes ] && ((seed >= wrong_seeds)) && continue
    for model in resnet-tiny beit-tiny; do
      for data in synthetic "imagefolder:$folder"; do
        for device in cpu gpu; do
          one "$planted" "$model" "$data" "$device" "$seed"
        done
      done
    done
  done
done

python3 - "$tsv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
for planted in ("no", "yes"):
    r = [x for x in rows if x["planted"] == planted]
    passed = sum(x["passed"] == "True" for x in r)
    failed = sum(x["passed"] == "False" for x in r)
    other = len(r) - passed - failed
    kinked = sum(int(x["kinked"]) for x in r)
    coords = sum(int(x["coords"]) for x in r)
    dev = max((float(x["max_device_error"]) for x in r), default=float("nan"))
    dif = max((float(x["max_difference_error"]) for x in r if x["passed"] == "True"), default=float("nan"))
    what = "correct code" if planted == "no" else "planted wrong relu rule"
    print(f"{what}: {len(r)} runs, check passed {passed}, refused {failed}, no result {other}; "
          f"coordinates {coords}, skipped at a kink {kinked}; max device-vs-f64 error {dev:.2e}, "
          f"max f64-vs-differences error (passing runs) {dif:.2e}")
PY
echo "rows: $tsv"
