//! `clce-cli`: fine-tune, evaluate, check gradients and benchmark CLCE models.
//! Each subcommand lives in `commands/<name>.rs`.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod device_arg;

#[derive(Parser)]
#[command(
    name = "clce-cli",
    version,
    about = "CLCE fine-tuning on any GPU (wgpu) or the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the devices --device can name: the CPU and every GPU adapter, best first.
    Devices(commands::devices::Args),
    /// Check every op's analytic gradient against central finite differences.
    Gradcheck(commands::gradcheck::Args),
    /// Show a checkpoint's tensors, dtypes, shapes, architecture, config and parameter count.
    Inspect(commands::inspect::Args),
    /// Run a checkpoint on a batch (from a file, or random) and write logits and pooled features.
    Forward(commands::forward::Args),
    /// Re-write a checkpoint (timm, torchvision or transformers naming) in timm's naming.
    Convert(commands::convert::Args),
    /// Evaluate a loss (clce, lacln, supcon, ...) and its gradients on a saved batch.
    Loss(commands::loss::Args),
    /// Time full training steps on random input: median step, views/s, peak memory.
    Bench(commands::bench::Args),
    /// The peak memory of one training step (weights, optimiser, gradients, activations),
    /// planned without running it.
    Plan(commands::plan::Args),
    /// Fine-tune a model with CLCE (or a baseline objective), evaluating every epoch.
    // Boxed: its many flags would make every command as large as it.
    Finetune(Box<commands::finetune::Args>),
    /// Top-1, top-5 and per-class accuracy of a checkpoint on a data split.
    Eval(commands::eval::Args),
    /// Few-shot evaluation (N-way K-shot episodes, logistic regression, mean ± 95% CI).
    Fewshot(commands::fewshot::Args),
    /// Write the pooled features of every image of a split to a safetensors file.
    Embed(commands::embed::Args),
    /// Isotropy, positive/negative similarity histograms and t-SNE of an embeddings file.
    Analyze(commands::analyze::Args),
    /// Loss, accuracy, learning-rate and few-shot curves of a training run, as PNG.
    Plot(commands::plot::Args),
}

fn main() -> ExitCode {
    // Before any thread exists (it sets an environment variable).
    clce_engine::gpu::quiet_wayland_probe();
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Devices(args) => commands::devices::run(args),
        Command::Gradcheck(args) => commands::gradcheck::run(args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Convert(args) => commands::convert::run(args),
        Command::Forward(args) => commands::forward::run(args),
        Command::Loss(args) => commands::loss::run(args),
        Command::Plan(args) => commands::plan::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Finetune(args) => commands::finetune::run(*args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Fewshot(args) => commands::fewshot::run(args),
        Command::Embed(args) => commands::embed::run(args),
        Command::Analyze(args) => commands::analyze::run(args),
        Command::Plot(args) => commands::plot::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A training step frees and allocates the same activation-sized buffers every step. glibc's
/// malloc, left to itself, serves the larger ones with fresh mmaps and trims freed memory back
/// to the OS, so every step pays a page fault on each page of them again: about 90,000 faults
/// in 9 beit-tiny steps, and up to a quarter of the CPU step (BENCHMARKS.md, "Host
/// allocator"). Keeping freed memory in the heap (no trimming; mmap only above 32 MB, glibc's
/// ceiling) lets the next step reuse it. The price: resident memory stays at its peak.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes malloc's parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}
