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
    /// Check every op's analytic gradient against central finite differences.
    Gradcheck(commands::gradcheck::Args),
    /// Evaluate a loss (clce, lacln, supcon, ...) and its gradients on a saved batch.
    Loss(commands::loss::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Gradcheck(args) => commands::gradcheck::run(args),
        Command::Loss(args) => commands::loss::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
