//! `clce-cli embed`: the pooled features of every image of a split, written as safetensors
//! (`embeddings` [N, d] F32, `labels` [N] I64, class names in the metadata) for `analyze`
//! and `fewshot --embeddings`.
use std::path::PathBuf;
use std::process::ExitCode;

use super::features_args::{output_path, ModelArgs};
use super::CmdResult;
use crate::device_arg::DeviceArg;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: ModelArgs,
    /// Where to write the embeddings (.safetensors).
    #[arg(long)]
    output: PathBuf,
    #[command(flatten)]
    device: DeviceArg,
}

pub fn run(args: Args) -> CmdResult {
    output_path(&args.output)?;
    let (embeddings, _) = args.source.compute(&args.device.resolve()?)?;
    embeddings.save(&args.output)?;
    println!(
        "wrote {}: {} embeddings of dimension {}, {} classes",
        args.output.display(),
        embeddings.len(),
        embeddings.dim,
        embeddings.num_classes()
    );
    Ok(ExitCode::SUCCESS)
}
