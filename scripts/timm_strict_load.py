#!/usr/bin/env python3
"""Issue 19: a checkpoint that `clce-cli finetune` saved loads in timm exactly as saved.

    scripts/timm_strict_load.py WEIGHTS TIMM_NAME CLCE_MODEL [CLI]

e.g. scripts/timm_strict_load.py runs/r50/best.safetensors resnet50 resnet-50

1. timm.create_model(TIMM_NAME, pretrained=True, pretrained_cfg_overlay=dict(file=WEIGHTS,
   num_classes=N)) with N from the file's metadata: timm's own loader, strict.
2. timm.models.load_checkpoint(model, WEIGHTS, strict=True) into a fresh model.
3. The logits of timm (eval mode) and of `clce-cli forward` on the same random batch.
4. The projection head beside the file (WEIGHTS stem + .proj_head.safetensors) holds proj.*.

By hand only (not CI): needs the PyTorch venv, benches/torch/.venv (torch, timm, safetensors).
CLI defaults to target/debug/clce-cli.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def find_image_size(config):
    """The `image_size` anywhere in the model's config (BEiT's is fixed), else None."""
    if isinstance(config, dict):
        if isinstance(config.get("image_size"), int):
            return config["image_size"]
        for v in config.values():
            found = find_image_size(v)
            if found:
                return found
    return None


def main() -> None:
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    weights, timm_name, clce_model = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    cli = sys.argv[4] if len(sys.argv) == 5 else "target/debug/clce-cli"
    with safe_open(str(weights), "pt") as f:
        meta = f.metadata() or {}
        names = list(f.keys())
    num_classes = int(meta["num_classes"])
    assert not any(n.startswith("proj.") for n in names), "proj.* inside the model file"

    model = timm.create_model(
        timm_name,
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(weights), num_classes=num_classes),
    ).eval()
    print(f"1. timm.create_model({timm_name!r}, pretrained_cfg_overlay=file): loaded")

    fresh = timm.create_model(timm_name, num_classes=num_classes).eval()
    timm.models.load_checkpoint(fresh, str(weights), strict=True)
    print("2. timm.models.load_checkpoint(strict=True): loaded")

    head = weights.with_name(weights.stem + ".proj_head.safetensors")
    head_names = sorted(load_file(str(head)).keys())
    assert head_names == ["proj.0.bias", "proj.0.weight", "proj.2.bias", "proj.2.weight"], head_names
    print(f"4. {head.name}: {', '.join(head_names)}")

    # ResNets take any size; 64 keeps the CPU run short.
    side = find_image_size(json.loads(meta.get("config", "{}"))) or 64
    torch.manual_seed(0)
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        ours_timm = model(x)
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "x.safetensors", Path(tmp) / "y.safetensors"
        save_file({"input": x.contiguous()}, str(inp))
        subprocess.run(
            [cli, "forward", "--model", clce_model, "--weights", str(weights), "--input", str(inp),
             "--output", str(out), "--device", "cpu"],
            check=True, stdout=subprocess.DEVNULL,
        )
        clce_logits = load_file(str(out))["logits"]
    diff = (clce_logits - ours_timm).abs().max().item()
    scale = ours_timm.abs().max().item()
    print(f"3. logits timm vs clce-cli forward on {tuple(x.shape)}: max |diff| {diff:.2e} "
          f"(max |logit| {scale:.2e})")
    assert diff <= 1e-3 * max(scale, 1.0), "timm and clce disagree"
    print("OK")


if __name__ == "__main__":
    main()
