//! `clce-cli bench`: full training steps (forward of 2B views, the objective, backward, AdamW)
//! on random input, timed, with the peak tensor memory of each step and the process's peak
//! resident memory, the FLOP rate against the model's analytic count and, with `--profile`,
//! the time per op family. No data is read; the model starts from random weights.
use std::process::ExitCode;
use std::time::Instant;

use clce_engine::gpu::{DispatchesByKernel, GpuCounters};
use clce_engine::profile::{self, Family, Phase, Profile};
use clce_engine::{DType, Device, Tensor};
use serde_json::{json, Map, Value};

use super::CmdResult;
use crate::device_arg::DeviceArg;
use clce_cli::train::plan::{allocator_of, MemorySettings, Rig};
use clce_cli::train::progress::format_bytes;
use clce_cli::train::{TrainError, TrainFlags};

#[derive(clap::Args)]
pub struct Args {
    /// The run's settings, as `finetune` takes them: --model, --batch-size, --image-size,
    /// --loss, --checkpoint-activations, --num-classes [100], ...
    #[command(flatten)]
    flags: TrainFlags,
    #[command(flatten)]
    device: DeviceArg,
    /// Timed steps.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Untimed steps first (buffer pools and pipelines warm up).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    json: bool,
    /// Also time each op family (matmul, conv, attention, norm, elementwise, layout, loss,
    /// optimiser, tape) in the forward pass, the backward pass and the update, averaged
    /// over the timed steps. On a GPU this is host time (recording and submitting work).
    #[arg(long)]
    profile: bool,
}

pub fn run(args: Args) -> CmdResult {
    if args.steps == 0 {
        return Err(TrainError::Invalid("--steps must be at least 1".into()).into());
    }
    let device = args.device.resolve()?;
    let cfg = super::plan::planned_config(&args.flags, args.device.name(), allocator_of(&device))?;
    let mut rig = Rig::new(&cfg, &device)?;
    let (b, s) = (cfg.batch_size, cfg.image_size);
    let x = Tensor::randn([2 * b, 3, s, s], 1.0, cfg.seed, DType::F32, &device)?;

    let mut times = Vec::with_capacity(args.steps);
    let mut cpu_times = Vec::with_capacity(args.steps);
    let mut peak_bytes = 0;
    let mut profiled = Profile::default();
    let mut counters_before = None;
    for step in 0..args.warmup + args.steps {
        let timed = step >= args.warmup;
        if step == args.warmup {
            counters_before = device.gpu_counters().zip(kernel_tally(&device));
        }
        device.reset_peak_memory();
        if timed && args.profile {
            profile::start();
        }
        let (started, cpu_started) = (Instant::now(), process_cpu_seconds());
        let done = rig.step(&cfg, step, &x);
        let synced = done.and_then(|_| Ok(device.synchronize()?));
        let seconds = started.elapsed().as_secs_f64();
        let cpu_seconds = process_cpu_seconds() - cpu_started;
        if timed && args.profile {
            profiled.add(&profile::stop());
        }
        synced?;
        if timed {
            times.push(seconds);
            cpu_times.push(cpu_seconds);
            peak_bytes = peak_bytes.max(device.memory_stats().peak_live_bytes);
        }
    }
    let counters = GpuPerStep::between(
        counters_before,
        device.gpu_counters().zip(kernel_tally(&device)),
        args.steps,
    );
    let counts_only = matches!(&device, Device::Gpu(g) if g.counts_only());
    if counts_only {
        eprintln!("CLCE_GPU_COUNT_ONLY=1: no kernel ran; only the GPU counts mean anything");
    }
    // Read once, after the timed steps (as finetune reads at logging time).
    if let Some(bad) = rig.guard.read()?.first_bad.filter(|_| !counts_only) {
        return Err(TrainError::Invalid(format!(
            "bench: the {} is {} at step {}",
            bad.what, bad.value, bad.step
        ))
        .into());
    }
    times.sort_by(f64::total_cmp);
    cpu_times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let median_cpu = cpu_times[cpu_times.len() / 2];
    let views_per_s = (2 * b) as f64 / median;
    let flops = step_flops(&cfg, rig.net.model.config());
    let flops_per_s = flops as f64 / median;
    let peak_rss = peak_rss_bytes();
    let profiled = args
        .profile
        .then(|| profiled.scaled(1.0 / args.steps as f64));
    if args.json {
        println!(
            "{}",
            counters.added_to(json!({
                "model": cfg.model,
                "batch_size": b,
                "views": 2 * b,
                "image_size": s,
                "loss": cfg.loss,
                "checkpoint_activations": cfg.checkpoint_activations,
                "micro_batch": cfg.micro_batch,
                "precision": cfg.precision,
                "device": device.to_string(),
                "steps": args.steps,
                "median_step_s": median,
                "min_step_s": times[0],
                "max_step_s": times[times.len() - 1],
                "median_cpu_s": median_cpu,
                "views_per_s": views_per_s,
                "step_flops": flops,
                "flops_per_s": flops_per_s,
                "peak_bytes": peak_bytes,
                "peak_rss_bytes": peak_rss,
                "profile": profiled.as_ref().map(profile_json),
            }))
        );
    } else {
        println!(
            "{} {b} images ({} views) x {s} px on {device}, {}: median step {median:.3} s \
             ({:.3} .. {:.3} over {} steps; {median_cpu:.3} CPU-s), {views_per_s:.1} views/s, \
             {:.1} GFLOP/s \
             ({:.1} GFLOP a step), peak tensor memory {}{}",
            cfg.model,
            2 * b,
            MemorySettings::of(&cfg),
            times[0],
            times[times.len() - 1],
            args.steps,
            flops_per_s / 1e9,
            flops as f64 / 1e9,
            format_bytes(peak_bytes),
            peak_rss.map_or(String::new(), |r| format!(", peak RSS {}", format_bytes(r)))
        );
        if let Some(p) = &profiled {
            print!("{}", profile_table(p, median));
        }
        counters.print(args.steps);
    }
    Ok(ExitCode::SUCCESS)
}

/// The analytic FLOP count of one step (`ModelConfig::train_flops`: forward + backward at
/// 2x the forward); with a frozen backbone only the forward pass counts (the heads'
/// backward is negligible).
fn step_flops(cfg: &clce_cli::train::TrainConfig, model: &clce_models::ModelConfig) -> u64 {
    let views = 2 * cfg.batch_size;
    if cfg.freeze_backbone {
        views as u64 * model.forward_flops(cfg.image_size)
    } else {
        model.train_flops(views, cfg.image_size)
    }
}

/// `{"forward": {"matmul": seconds, ...}, "backward": {...}, "update": {...}, "ops": [{"phase",
/// "op", "seconds"}, ...]}`, the ops most expensive first.
fn profile_json(p: &Profile) -> Value {
    let mut out: Map<String, Value> = Phase::ALL
        .iter()
        .map(|&phase| {
            let families: Map<String, Value> = Family::ALL
                .iter()
                .map(|&f| (f.name().to_string(), json!(p.get(phase, f))))
                .collect();
            (phase.name().to_string(), Value::Object(families))
        })
        .collect();
    let ops = p
        .ops()
        .into_iter()
        .map(|(phase, op, seconds)| json!({"phase": phase.name(), "op": op, "seconds": seconds}));
    out.insert("ops".into(), Value::Array(ops.collect()));
    Value::Object(out)
}

/// How many ops the --profile summary lists.
const TOP_OPS: usize = 12;

/// Milliseconds per family (rows) and phase (columns), with each family's share of the step.
fn profile_table(p: &Profile, median_step_s: f64) -> String {
    let ms = |s: f64| format!("{:.1}", s * 1e3);
    let mut out = format!(
        "time per step by op family, ms (mean over the timed steps; median step {} ms):\n\
         {:<12} {:>10} {:>10} {:>10} {:>10} {:>6}\n",
        ms(median_step_s),
        "family",
        "forward",
        "backward",
        "update",
        "total",
        "share"
    );
    let total = p.total().max(f64::MIN_POSITIVE);
    for f in Family::ALL {
        let row: f64 = Phase::ALL.iter().map(|&ph| p.get(ph, f)).sum();
        if row == 0.0 {
            continue;
        }
        out += &format!(
            "{:<12} {:>10} {:>10} {:>10} {:>10} {:>5.1}%\n",
            f.name(),
            ms(p.get(Phase::Forward, f)),
            ms(p.get(Phase::Backward, f)),
            ms(p.get(Phase::Update, f)),
            ms(row),
            100.0 * row / total
        );
    }
    out += &format!(
        "{:<12} {:>10} {:>10} {:>10} {:>10}\n",
        "all",
        ms(p.phase_total(Phase::Forward)),
        ms(p.phase_total(Phase::Backward)),
        ms(p.phase_total(Phase::Update)),
        ms(p.total())
    );
    out += &format!("the {TOP_OPS} most expensive ops (backward: the op's backward rule), ms:\n");
    for (phase, op, seconds) in p.ops().into_iter().take(TOP_OPS) {
        out += &format!("  {:<9} {:<16} {:>10}\n", phase.name(), op, ms(seconds));
    }
    out
}

/// CPU time of the whole process (all threads) so far, in seconds: a step's CPU-seconds say
/// what it cost where other processes share the cores and stretch its wall time.
fn process_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given and nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The process's peak resident memory (Linux's VmHWM), None where /proc has no such line.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The GPU's counters averaged over the timed steps (`--device gpu` only): the figures that
/// decide a real GPU's speed, exact even on a software adapter.
struct GpuPerStep(Option<([f64; 5], Vec<(String, u64)>)>);

/// The device's counters and its dispatches by kernel.
type Tally = (GpuCounters, DispatchesByKernel);

fn kernel_tally(device: &Device) -> Option<DispatchesByKernel> {
    match device {
        Device::Gpu(g) => Some(g.dispatches_by_kernel()),
        _ => None,
    }
}

impl GpuPerStep {
    const NAMES: [&'static str; 5] = [
        "dispatches_per_step",
        "submissions_per_step",
        "readbacks_per_step",
        "buffer_creations_per_step",
        "transfer_bytes_per_step",
    ];

    fn between(before: Option<Tally>, after: Option<Tally>, steps: usize) -> Self {
        GpuPerStep(before.zip(after).map(|((before, kb), (after, ka))| {
            let c = after.since(&before);
            let n = steps as f64;
            let averages = [
                c.dispatches as f64 / n,
                c.submissions as f64 / n,
                c.readbacks as f64 / n,
                c.buffer_creations as f64 / n,
                c.transfer_bytes() as f64 / n,
            ];
            (averages, ka.since(&kb))
        }))
    }

    /// `out` with the averages (null off a GPU).
    fn added_to(&self, mut out: serde_json::Value) -> serde_json::Value {
        for (i, name) in Self::NAMES.iter().enumerate() {
            out[*name] = json!(self.0.as_ref().map(|(v, _)| v[i]));
        }
        out
    }

    /// The averages, and the kernels dispatched most.
    fn print(&self, steps: usize) {
        let Some(([dispatches, submissions, readbacks, creations, bytes], kernels)) = &self.0
        else {
            return;
        };
        println!(
            "GPU per step: {dispatches:.1} dispatches, {submissions:.1} submissions, \
             {readbacks:.1} readbacks, {creations:.1} buffer creations, {} transferred",
            format_bytes(*bytes as u64)
        );
        let top: Vec<String> = kernels
            .iter()
            .take(12)
            .map(|(k, n)| format!("{k} {:.0}", *n as f64 / steps as f64))
            .collect();
        println!("  most dispatched: {}", top.join(", "));
    }
}
