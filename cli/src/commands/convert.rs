//! `clce-cli convert IN OUT`: re-writes a checkpoint in timm's naming (with its configuration
//! in the metadata), after loading it into a model so that only complete, consistent files
//! are written.
use std::path::PathBuf;
use std::process::ExitCode;

use clce_models::checkpoint::FileDType;
use clce_models::model::proj_head_path;
use clce_models::{LoadOptions, Model, SaveOptions};

use super::inspect::thousands;
use super::CmdResult;

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint to read (timm, torchvision, transformers or clce; F32, F16 or BF16).
    input: PathBuf,
    /// Where to write the timm-named safetensors file.
    output: PathBuf,
    /// Float type of the written weights: f32, f16, bf16.
    #[arg(long, default_value = "f32")]
    dtype: FileDType,
    /// Leave out our projection head (proj.*). Without it the head goes beside OUT, in
    /// OUT's stem + `.proj_head.safetensors`; OUT itself never holds it, so timm loads OUT
    /// strictly either way.
    #[arg(long)]
    drop_proj: bool,
}

pub fn run(args: Args) -> CmdResult {
    // Keep the projection head only if the file has one: converting must not invent weights.
    let file_proj = super::file_proj_dim(&args.input)?;
    let opts = LoadOptions {
        proj_dim: if args.drop_proj {
            Some(0)
        } else {
            file_proj.or(Some(0))
        },
        ..LoadOptions::default()
    };
    let (model, report) = Model::load(&args.input, &opts)?;
    print!("{report}");
    let save = SaveOptions {
        dtype: args.dtype,
        ..SaveOptions::default()
    };
    let head = proj_head_path(&args.output);
    model.save_with_head(&args.output, &head, &save)?;
    let proj = match model.num_proj_params() {
        0 => String::new(),
        n => format!(
            " + {} in the projection head, in {}",
            thousands(n),
            head.display()
        ),
    };
    println!(
        "wrote {} ({}, timm naming, {} tensors, {} parameters{proj})",
        args.output.display(),
        args.dtype,
        model.store().len(),
        thousands(model.num_params()),
    );
    Ok(ExitCode::SUCCESS)
}
