//! `clce-cli bench`: full training steps (forward of 2B views, the objective, backward, AdamW)
//! on random input, timed, with the peak tensor memory of each step and the process's peak
//! resident memory. No data is read; the model starts from random weights.
use std::process::ExitCode;
use std::time::Instant;

use clce_engine::gpu::{DispatchesByKernel, GpuCounters};
use clce_engine::{DType, Device, Tensor};
use serde_json::json;

use super::CmdResult;
use crate::device_arg::DeviceArg;
use clce_cli::train::plan::Rig;
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
}

pub fn run(args: Args) -> CmdResult {
    if args.steps == 0 {
        return Err(TrainError::Invalid("--steps must be at least 1".into()).into());
    }
    let device = args.device.resolve()?;
    let cfg = super::plan::planned_config(&args.flags, &args.device.device)?;
    let mut rig = Rig::new(&cfg, &device)?;
    let (b, s) = (cfg.batch_size, cfg.image_size);
    let x = Tensor::randn([2 * b, 3, s, s], 1.0, cfg.seed, DType::F32, &device)?;

    let mut times = Vec::with_capacity(args.steps);
    let mut peak_bytes = 0;
    let mut counters_before = None;
    for step in 0..args.warmup + args.steps {
        if step == args.warmup {
            counters_before = device.gpu_counters().zip(kernel_tally(&device));
        }
        device.reset_peak_memory();
        let started = Instant::now();
        rig.step(&cfg, step, &x)?;
        device.synchronize()?;
        let seconds = started.elapsed().as_secs_f64();
        if step >= args.warmup {
            times.push(seconds);
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
    let median = times[times.len() / 2];
    let views_per_s = (2 * b) as f64 / median;
    let peak_rss = peak_rss_bytes();
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
                "device": device.to_string(),
                "steps": args.steps,
                "median_step_s": median,
                "min_step_s": times[0],
                "max_step_s": times[times.len() - 1],
                "views_per_s": views_per_s,
                "peak_bytes": peak_bytes,
                "peak_rss_bytes": peak_rss,
            }))
        );
    } else {
        println!(
            "{} {b} images ({} views) x {s} px on {device}{}: median step {median:.3} s \
             ({:.3} .. {:.3} over {} steps), {views_per_s:.1} views/s, peak tensor memory {}{}",
            cfg.model,
            2 * b,
            if cfg.checkpoint_activations {
                ", activation checkpointing"
            } else {
                ""
            },
            times[0],
            times[times.len() - 1],
            args.steps,
            format_bytes(peak_bytes),
            peak_rss.map_or(String::new(), |r| format!(", peak RSS {}", format_bytes(r)))
        );
        counters.print(args.steps);
    }
    Ok(ExitCode::SUCCESS)
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
