#!/usr/bin/env python3
"""The table at the end of scripts/gpu-bench.sh's report: one row per training-step
configuration, clce (`clce-cli bench --json`, with its GPU counters) beside PyTorch
(benches/torch/step.py --json) on the same GPU.

    python3 scripts/gpu-bench-table.py STEPS.jsonl
"""
import json
import sys


def key(r):
    return (r["model"], r["batch_size"], r["image_size"], bool(r["checkpoint_activations"]),
            r.get("precision", "f32"))


def main(path):
    rows = {}
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        rows.setdefault(key(r), {})[r.get("engine", "clce")] = r
    if not rows:
        print("(no training step ran)")
        return
    print("| model | images | px | ckpt | precision | clce step s | PyTorch step s | clce / PyTorch "
          "| dispatches/step | submissions/step | readbacks/step | buffer creations/step "
          "| clce peak MiB | PyTorch peak MiB |")
    print("|" + " --- |" * 14)
    mib = lambda b: "" if b is None else f"{b / 2**20:,.0f}"
    num = lambda v, f="{:.3f}": "" if v is None else f.format(v)
    for (model, images, px, ckpt, precision), r in rows.items():
        c, t = r.get("clce", {}), r.get("pytorch", {})
        cs, ts = c.get("median_step_s"), t.get("median_step_s")
        ratio = f"{cs / ts:.2f}x" if cs and ts else ""
        print(f"| {model} | {images} | {px} | {'yes' if ckpt else 'no'} | {precision} "
              f"| {num(cs)} | {num(ts)} | {ratio} "
              f"| {num(c.get('dispatches_per_step'), '{:.0f}')} "
              f"| {num(c.get('submissions_per_step'), '{:.1f}')} "
              f"| {num(c.get('readbacks_per_step'), '{:.1f}')} "
              f"| {num(c.get('buffer_creations_per_step'), '{:.1f}')} "
              f"| {mib(c.get('peak_bytes'))} | {mib(t.get('peak_bytes'))} |")
    gpus = {t["device"] for r in rows.values() for t in [r.get("pytorch")] if t}
    gpus |= {c["device"] for r in rows.values() for c in [r.get("clce")] if c}
    print(f"devices: {', '.join(sorted(gpus))}")


if __name__ == "__main__":
    main(sys.argv[1])
