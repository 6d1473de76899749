#!/usr/bin/env python3
"""One full CLCE training step in PyTorch (CPU, or CUDA with --device cuda): the twin of
`clce-cli bench` (issues 14 and 18).

    benches/torch/.venv/bin/python benches/torch/step.py --model beit-base --batch-size 8 \
        --image-size 224 [--checkpoint-activations] [--steps 3] [--warmup 1] [--threads 2] [--json]

(benches/torch/setup.sh makes the virtual environment.) A step is what `clce-cli finetune`
does per batch (../shared/docs/METHOD.md): B random images, two views each, so M = 2B views
(views i and i+B share a label); a train-mode forward of all M views (drop path, BatchNorm batch
statistics); logits = head(h) and z = normalize(proj(h)) with proj = Linear(d, d) -> ReLU ->
Linear(d, 128); loss = (1 - lambda) CE(logits, labels) + lambda LACLN(z) with hard-negative
mining (lambda 0.9, tau 0.5, beta 1); backward; AdamW step. Random weights
(timm.create_model(..., pretrained=False), nothing is downloaded), random inputs, random labels
of --num-classes (100, CIFAR-100). BEiT gets drop path 0.15, clce's default (README: --drop-path).

--checkpoint-activations wraps every transformer block (BEiT) / bottleneck block (ResNet) in
torch.utils.checkpoint.checkpoint(..., use_reentrant=False), as clce checkpoints per block: only
block inputs are kept in the forward, each block is recomputed in the backward. (Known
difference: in that recomputation PyTorch's BatchNorm updates its running statistics a second
time; clce's does not. It changes no memory or time figure.)

What is measured:
- step_flops, flops_per_s: FLOPs of a step (the forward pass as torch's FlopCounterMode counts
  it, times 3 for forward + backward, as clce's analytic count) and that over median_step_s.
- median_cpu_s: the median of the steps' process CPU time (all threads; time.process_time()).
  With OMP's default wait policy, threads spinning at barriers count too.
- median_step_s: the median wall time of --steps steps after --warmup steps (the first step also
  allocates AdamW's state, so keep --warmup >= 1); views_per_s = M / median_step_s. On a
  machine whose cores are busy with other work, PyTorch's OpenMP threads spin-wait for each
  other and the steps get several times slower (2026-12-06, beit-tiny 128 views, load 5 on
  2 cores: 0.49 s with 2 threads, 0.07 s with 1, 0.11 s with 2 and OMP_WAIT_POLICY=PASSIVE).
  Time on an idle machine; memory figures do not depend on it.
- peak_rss_bytes: ru_maxrss of this process (Linux reports KiB; converted to bytes), read after
  the timed steps, before the profiled step below. It includes the Python interpreter, the torch
  libraries (the PyPI wheel maps CUDA libraries even on the CPU: see import_rss_bytes), the
  weights, gradients, AdamW moments, activations and whatever glibc malloc keeps cached.
- import_rss_bytes: RSS (/proc/self/statm) after importing torch and timm.
- runtime_rss_bytes: RSS after building the model (with heads) and the optimiser, before the first
  step. PyTorch's AdamW allocates its two moments lazily in the first step, and the gradients
  appear in the first backward, so peak_rss_bytes - runtime_rss_bytes =
  activations + gradients + AdamW state (+ allocator slack); grad_bytes and optimizer_state_bytes
  give the last two exactly, so activations ~= peak - runtime - grad_bytes - optimizer_state_bytes.
- peak_bytes: the peak of live tensor bytes in one extra step run under
  torch.profiler.profile(profile_memory=True) after the timed ones: the bytes live at the step's
  start (parameters and AdamW state, counted from the tensors themselves; gradients are None
  then, zero_grad(set_to_none=True)) plus the maximum of the running sum of the CPU allocator's
  allocation/free events during the step. That is what the allocator handed out, not RSS (no
  interpreter, libraries or malloc slack). --no-profile skips it (peak_bytes is then null).
  The profiled step is not timed and comes after peak_rss_bytes is read.

--device cuda runs the same step on the GPU (scripts/gpu-bench.sh does, beside clce on the same
GPU): TF32 off, so that f32 matrix products are true f32 as clce's; --precision f16 runs the
forward and the loss under torch.autocast(float16) with a GradScaler, PyTorch's usual mixed
precision. Each timed step ends with loss.item(), which waits for the GPU. peak_bytes is then
torch.cuda.max_memory_allocated over the timed steps (no profiler step).

beit-tiny / resnet-tiny are the tiny models of ../shared/fixtures/models (the configurations in
those files' metadata, written by timm 1.0.31): BEiT img 32, patch 8, width 64, depth 2, 4 heads,
layer scale 0.1, relative position bias per block, no absolute position embedding; ResNet
Bottleneck [1, 2, 1, 1] blocks, channels (8, 16, 32, 64), 64-channel stem. --check-fixtures
loads those files into the models built here and compares the eval-mode logits with theirs, and
checks the loss below against ../shared/fixtures/losses.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import timm
from torch.utils.checkpoint import checkpoint

IMPORT_RSS = None  # set in main, right after these imports


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_split():
    """(anonymous, file-backed) resident bytes from /proc/self/status. File-backed pages are
    mostly the mapped shared libraries (the CUDA ones of the PyPI wheel among them)."""
    kib = {l.split(":")[0]: int(l.split()[1]) for l in open("/proc/self/status")
           if l.startswith(("RssAnon", "RssFile"))}
    return kib["RssAnon"] * 1024, kib["RssFile"] * 1024


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


# ---------------------------------------------------------------------------------------------
# The objective (METHOD.md). With s = z z^T / tau, P(i) the other views of i's class, N(i) the
# views of other classes:
#   m_i = mean_{p in P(i)} e^{s_ip},  w_ik = |N(i)| softmax_{k in N(i)}(beta s_ik)  (not detached),
#   n_i = sum_{k in N(i)} w_ik e^{s_ik},  L = mean over anchors with a positive of -log(m/(m+n)).
# In log space: -log(m/(m+n)) = softplus(log n - log m), with
#   log m = lse_P(s) - log|P|,  log n = log|N| + lse_N((1+beta) s) - lse_N(beta s).
def lacln(z, labels, tau=0.5, beta=1.0):
    s = z @ z.T / tau
    same = labels[:, None] == labels[None, :]
    pos = same & ~torch.eye(len(labels), dtype=torch.bool, device=z.device)
    neg = ~same

    def lse(x, mask):  # log-sum-exp over the masked entries of each row; -1e9 keeps an empty
        return torch.logsumexp(x.masked_fill(~mask, -1e9), dim=1)  # row's gradient finite

    count = lambda mask: mask.sum(1).to(s.dtype).log()
    log_m = lse(s, pos) - count(pos)
    log_n = count(neg) + lse((1 + beta) * s, neg) - lse(beta * s, neg)  # -inf: no negatives
    per_anchor = F.softplus(log_n - log_m)
    return per_anchor[pos.any(1)].mean()


def clce_loss(logits, proj, labels, lam=0.9, tau=0.5, beta=1.0):
    z = F.normalize(proj, dim=1)
    return (1 - lam) * F.cross_entropy(logits, labels) + lam * lacln(z, labels, tau, beta)


# ---------------------------------------------------------------------------------------------
# Models: timm encoder + timm's classifier head + our projection head (MODELS.md, METHOD.md 3).
def build_encoder(name, image_size, num_classes, drop_path):
    if name == "beit-base":
        return timm.create_model("beit_base_patch16_224", pretrained=False, img_size=image_size,
                                 num_classes=num_classes, drop_path_rate=drop_path)
    if name == "beit-tiny":
        return timm.models.beit.Beit(img_size=image_size, patch_size=8, embed_dim=64, depth=2,
                                     num_heads=4, num_classes=num_classes, init_values=0.1,
                                     use_rel_pos_bias=True, use_abs_pos_emb=False,
                                     drop_path_rate=drop_path)
    if name == "resnet-101":
        return timm.create_model("resnet101", pretrained=False, num_classes=num_classes)
    if name == "resnet-tiny":
        from timm.models.resnet import Bottleneck, ResNet
        return ResNet(Bottleneck, layers=[1, 2, 1, 1], channels=(8, 16, 32, 64), stem_width=8,
                      num_classes=num_classes)
    raise SystemExit(f"unknown model {name!r}")


class Checkpointed(nn.Module):
    """A block whose activations are recomputed in the backward instead of stored."""

    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, *args, **kwargs):
        return checkpoint(self.block, *args, use_reentrant=False, **kwargs)


def checkpoint_blocks(encoder):
    if hasattr(encoder, "blocks"):  # BEiT: one transformer block at a time
        encoder.blocks = nn.ModuleList(Checkpointed(b) for b in encoder.blocks)
    else:  # ResNet: one bottleneck block at a time
        for stage in (encoder.layer1, encoder.layer2, encoder.layer3, encoder.layer4):
            for i in range(len(stage)):
                stage[i] = Checkpointed(stage[i])


class ClceModel(nn.Module):
    def __init__(self, encoder, proj_dim=128):
        super().__init__()
        self.encoder = encoder
        d = encoder.num_features
        self.proj = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, proj_dim))

    def forward(self, x):
        h = self.encoder.forward_head(self.encoder.forward_features(x), pre_logits=True)
        return self.encoder.get_classifier()(h), self.proj(h)


def adamw(model, lr, weight_decay=0.05):
    """AdamW as clce's finetune: no decay on biases, norms, cls token, relative position tables
    and layer-scale vectors (1-D tensors and those names). Layer-wise lr decay changes neither
    memory nor time and is left out. PyTorch's default CPU implementation (not foreach)."""
    no_decay = lambda n, p: p.ndim <= 1 or "cls_token" in n or "relative_position_bias_table" in n
    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": weight_decay},
              {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)


def tensor_bytes(tensors):
    seen, total = set(), 0
    for t in tensors:
        if torch.is_tensor(t) and t.untyped_storage().data_ptr() not in seen:
            seen.add(t.untyped_storage().data_ptr())
            total += t.untyped_storage().nbytes()
    return total


def optimizer_state_bytes(opt):
    return tensor_bytes(v for st in opt.state.values() for v in st.values())


# ---------------------------------------------------------------------------------------------
def train_step(model, opt, x, labels, scaler=None):
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        logits, proj = model(x)
        loss = clce_loss(logits, proj, labels)
        loss.backward()
        opt.step()
    else:
        with torch.autocast(x.device.type, dtype=torch.float16):
            logits, proj = model(x)
            loss = clce_loss(logits.float(), proj.float(), labels)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return loss.item()


def step_flops(model, x):
    """FLOPs of one training step on x: the forward pass counted by torch's FlopCounterMode
    (matrix products, convolutions and attention; 2 per multiply-add), times 3 for forward +
    backward (backward = 2x forward), the convention of clce's ModelConfig::train_flops. The
    loss's own products are left out, as there."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return 3 * counter.get_total_flops()


def profiled_peak_bytes(model, opt, x, labels):
    from torch.profiler import ProfilerActivity, profile
    opt.zero_grad(set_to_none=True)
    live = (tensor_bytes(model.parameters()) + tensor_bytes(model.buffers())
            + optimizer_state_bytes(opt) + tensor_bytes([x, labels]))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        train_step(model, opt, x, labels)
    # Every allocation (+bytes) and free (-bytes) of the CPU allocator, in time order. The raw
    # Kineto events: prof.events() folds the ones inside an op into the op's totals.
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return live + peak, len(events)


def check_fixtures(fixtures):
    """The tiny models and the loss against the PyTorch-written fixtures."""
    from safetensors.torch import load_file
    ok = True
    for name, stem in (("beit-tiny", "beit_timm_tiny"), ("resnet-tiny", "resnet_timm_tiny")):
        enc = build_encoder(name, 32, 10, 0.0)
        state = load_file(f"{fixtures}/models/{stem}.safetensors")
        io = load_file(f"{fixtures}/models/{stem}.io.safetensors")
        for k in [k for k in state if k.endswith("relative_position_index")]:
            # real files carry it; timm rebuilds it as a non-persistent buffer: compare, drop
            ok &= torch.equal(state.pop(k), enc.get_buffer(k).to(torch.int64))
        enc.load_state_dict(state, strict=True)
        if name == "resnet-tiny":
            # The file's running stats carry one train-mode update on `input` that the eval
            # outputs did not see (fixtures/README): r_file = 0.9 r + 0.1 batch stat; undo it.
            # Train-mode BatchNorm normalises with batch statistics, so one train-mode forward
            # gives every layer's batch statistics whatever the running stats are.
            bns = {n: m for n, m in enc.named_modules() if isinstance(m, nn.BatchNorm2d)}
            stats = {}
            hooks = [m.register_forward_hook(lambda m, i, o, n=n: stats.__setitem__(
                n, (i[0].mean((0, 2, 3)), i[0].var((0, 2, 3), unbiased=True))))
                for n, m in bns.items()]
            with torch.no_grad():
                enc.train()(io["input"])
            for h in hooks:
                h.remove()
            for n, m in bns.items():
                m.running_mean.copy_((state[n + ".running_mean"] - 0.1 * stats[n][0]) / 0.9)
                m.running_var.copy_((state[n + ".running_var"] - 0.1 * stats[n][1]) / 0.9)
        enc.eval()
        with torch.no_grad():
            logits = enc(io["input"])
        err = ((logits - io["eval.logits"]).norm() / io["eval.logits"].norm()).item()
        print(f"{name}: eval logits rel. error vs fixture {err:.2e}")
        ok &= err < 1e-4
    import glob
    for path in sorted(glob.glob(f"{fixtures}/losses/*.safetensors")):
        from safetensors import safe_open
        with safe_open(path, "pt") as f:
            meta = {k: json.loads(v) for k, v in f.metadata().items()}
        t = load_file(path)
        feats = t["features"].double().requires_grad_()
        logits = t["logits"].double().requires_grad_()
        loss = clce_loss(logits, feats, t["labels"], meta["lambda"], meta["tau"], meta["beta"])
        loss.backward()
        lerr = abs(loss.item() - t["clce.loss"].item()) / abs(t["clce.loss"].item())
        rel = lambda g, ref: ((g - ref).norm() / ref.norm()).item()
        gerr = max(rel(feats.grad, t["clce.grad_features"]), rel(logits.grad, t["clce.grad_logits"]))
        print(f"{os.path.basename(path)}: clce loss rel. error {lerr:.1e}, grad {gerr:.1e}")
        ok &= lerr < 1e-9 and gerr < 1e-9
    return ok


def main():
    global IMPORT_RSS
    IMPORT_RSS = IMPORT_RSS or rss_bytes()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=["beit-base", "resnet-101", "beit-tiny", "resnet-tiny"])
    p.add_argument("--batch-size", type=int, default=8, help="images; each gives two views")
    p.add_argument("--image-size", type=int, help="default 224 (32 for the tiny models)")
    p.add_argument("--checkpoint-activations", action="store_true")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--precision", choices=["f32", "f16"], default="f32",
                   help="f16: autocast float16 + GradScaler (cuda only)")
    p.add_argument("--num-classes", type=int, default=100)
    p.add_argument("--drop-path", type=float, help="BEiT only; default 0.15 (clce's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-profile", action="store_true", help="skip the peak_bytes step")
    p.add_argument("--json", action="store_true", help="print one JSON object only")
    p.add_argument("--check-fixtures", metavar="DIR", nargs="?", const="../shared/fixtures",
                   help="check the tiny models and the loss against the fixtures and exit")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if a.check_fixtures:
        sys.exit(0 if check_fixtures(a.check_fixtures) else 1)
    if not a.model:
        p.error("--model is required")
    if a.precision == "f16" and a.device != "cuda":
        p.error("--precision f16 needs --device cuda")
    if a.device == "cuda":
        # True f32 matrix products, as clce computes them.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    tiny = a.model.endswith("tiny")
    size = a.image_size or (32 if tiny else 224)
    is_beit = a.model.startswith("beit")
    drop_path = (0.15 if a.drop_path is None else a.drop_path) if is_beit else 0.0

    encoder = build_encoder(a.model, size, a.num_classes, drop_path)
    if a.checkpoint_activations:
        checkpoint_blocks(encoder)
    model = ClceModel(encoder).train().to(a.device)
    opt = adamw(model, lr=7e-4 * a.batch_size / 1024)
    scaler = torch.amp.GradScaler("cuda") if a.precision == "f16" else None
    views = 2 * a.batch_size
    x = torch.randn(views, 3, size, size).to(a.device)
    y = torch.randint(0, a.num_classes, (a.batch_size,))
    labels = torch.cat([y, y]).to(a.device)  # view i and i + B come from the same image
    runtime_rss = rss_bytes()
    runtime_anon, runtime_file = rss_split()

    times, cpu_times, losses = [], [], []
    for i in range(a.warmup + a.steps):
        if i == a.warmup and a.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0, c0 = time.perf_counter(), time.process_time()
        losses.append(train_step(model, opt, x, labels, scaler))
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
        if not a.json:
            print(f"step {i}{' (warm-up)' if i < a.warmup else ''}: "
                  f"{time.perf_counter() - t0:.3f} s, loss {losses[-1]:.4f}", file=sys.stderr)
    peak_rss = peak_rss_bytes()
    end_anon, end_file = rss_split()
    median = statistics.median(times) if times else None
    flops = step_flops(model, x)
    n_params = sum(p.numel() for p in model.parameters())
    result = {
        "engine": "pytorch",
        "model": a.model,
        "batch_size": a.batch_size,
        "views": views,
        "image_size": size,
        "checkpoint_activations": a.checkpoint_activations,
        "threads": a.threads,
        "device": torch.cuda.get_device_name() if a.device == "cuda" else "cpu",
        "precision": a.precision,
        "num_classes": a.num_classes,
        "drop_path": drop_path,
        "warmup": a.warmup,
        "steps": a.steps,
        "step_s": times,
        "median_step_s": median,
        "min_step_s": min(times) if times else None,
        "max_step_s": max(times) if times else None,
        "median_cpu_s": statistics.median(cpu_times) if times else None,
        "views_per_s": views / median if times else None,
        "step_flops": flops,
        "flops_per_s": flops / median if times else None,
        "losses": losses,
        "parameters": n_params,
        "param_bytes": tensor_bytes(model.parameters()),
        "grad_bytes": tensor_bytes(p.grad for p in model.parameters()),
        "optimizer_state_bytes": optimizer_state_bytes(opt),
        "import_rss_bytes": IMPORT_RSS,
        "runtime_rss_bytes": runtime_rss,
        "runtime_rss_anon_bytes": runtime_anon,
        "runtime_rss_file_bytes": runtime_file,
        "peak_rss_bytes": peak_rss,
        "end_rss_anon_bytes": end_anon,
        "end_rss_file_bytes": end_file,
        "peak_bytes": None,
        "peak_bytes_method": None,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": sys.version.split()[0],
    }
    if a.device == "cuda":
        result["peak_bytes"] = torch.cuda.max_memory_allocated()
        result["peak_bytes_method"] = "torch.cuda.max_memory_allocated over the timed steps"
    elif not a.no_profile:
        peak, n_events = profiled_peak_bytes(model, opt, x, labels)
        result["peak_bytes"] = peak
        result["peak_bytes_method"] = (
            f"live parameter/buffer/AdamW-state/input bytes at the step's start + max running "
            f"sum of {n_events} torch.profiler CPU allocator events (profile_memory=True) over "
            f"one extra untimed step")
    if a.json:
        print(json.dumps(result))
    else:
        mib = lambda b: f"{b / 2**20:,.0f} MiB"
        print(f"{a.model} batch {a.batch_size} ({views} views) x {size} px, checkpointing "
              f"{'on' if a.checkpoint_activations else 'off'}, {a.threads} threads, torch "
              f"{torch.__version__}, timm {timm.__version__}")
        print(f"median step {result['median_step_s']:.3f} s ({result['views_per_s']:.2f} views/s)"
              f" over {a.steps} steps {['%.3f' % t for t in times]}, "
              f"{result['flops_per_s'] / 1e9:.1f} GFLOP/s ({flops / 1e9:.1f} GFLOP a step)")
        print(f"peak RSS {mib(peak_rss)}; runtime RSS {mib(runtime_rss)} (after import "
              f"{mib(IMPORT_RSS)}); peak - runtime {mib(peak_rss - runtime_rss)}")
        print(f"params {mib(result['param_bytes'])}, grads {mib(result['grad_bytes'])}, AdamW "
              f"state {mib(result['optimizer_state_bytes'])}")
        if result["peak_bytes"] is not None:
            print(f"peak tensor bytes {mib(result['peak_bytes'])} ({result['peak_bytes_method']})")


if __name__ == "__main__":
    IMPORT_RSS = rss_bytes()
    main()
