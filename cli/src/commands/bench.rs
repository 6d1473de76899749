//! `clce-cli bench`: full training steps (forward of 2B views, the objective, backward, AdamW)
//! on random input, timed, with the peak tensor memory of each step and the process's peak
//! resident memory. No data is read; the model starts from random weights.
use std::process::ExitCode;
use std::time::Instant;

use clce_engine::{DType, Tensor};
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
    let cfg = super::plan::planned_config(&args.flags, args.device.name())?;
    let mut rig = Rig::new(&cfg, &device)?;
    let (b, s) = (cfg.batch_size, cfg.image_size);
    let x = Tensor::randn([2 * b, 3, s, s], 1.0, cfg.seed, DType::F32, &device)?;
    let non_finite = |what, value| TrainError::Invalid(format!("bench: the {what} is {value}"));

    let mut times = Vec::with_capacity(args.steps);
    let mut peak_bytes = 0;
    for step in 0..args.warmup + args.steps {
        device.reset_peak_memory();
        let started = Instant::now();
        rig.step(&cfg, step, &x, &non_finite)?;
        device.synchronize()?;
        let seconds = started.elapsed().as_secs_f64();
        if step >= args.warmup {
            times.push(seconds);
            peak_bytes = peak_bytes.max(device.memory_stats().peak_live_bytes);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let views_per_s = (2 * b) as f64 / median;
    let peak_rss = peak_rss_bytes();
    if args.json {
        println!(
            "{}",
            json!({
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
                "views_per_s": views_per_s,
                "peak_bytes": peak_bytes,
                "peak_rss_bytes": peak_rss,
            })
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
