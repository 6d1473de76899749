//! `clce-cli forward`: runs a checkpoint on a batch of images and writes `logits` and
//! `pooled` (and `projection` when the file has a projection head), so that outputs can be
//! compared with PyTorch's for the same file and input.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clce_engine::{no_grad, DType, Tensor};
use clce_models::checkpoint::{Checkpoint, FileTensor, Values};
use clce_models::{LoadOptions, Mode, Model};

use super::CmdResult;
use crate::device_arg::DeviceArg;

#[derive(clap::Args)]
pub struct Args {
    /// A preset (beit-base, resnet-101, beit-tiny, resnet-tiny, resnet-50) whose shapes the
    /// file must have, or beit / resnet to take the size from the file.
    #[arg(long)]
    model: String,
    /// The checkpoint (timm, torchvision, transformers or clce naming; F32, F16 or BF16).
    #[arg(long)]
    weights: PathBuf,
    /// Images [N, C, H, W], already normalised, as the tensor `input` (or the file's only
    /// tensor) of a safetensors file. Without it: a random batch, written to --output.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Where to write `logits`, `pooled` (and `input` when it was random) as safetensors.
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArg,
    /// BatchNorm with batch statistics (updating the running ones), as in training.
    #[arg(long)]
    train_mode: bool,
    /// Classes of the classifier head; a different count than the file's re-initialises it.
    #[arg(long)]
    num_classes: Option<usize>,
    /// Batch size of the random input.
    #[arg(long, default_value_t = 2)]
    batch: usize,
    /// Seed of the random input and of anything initialised rather than loaded.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: Args) -> CmdResult {
    let device = args.device.resolve()?;
    let opts = LoadOptions {
        model: Some(args.model.clone()),
        num_classes: args.num_classes,
        // Only a projection head the file has: a random one would say nothing.
        proj_dim: super::file_proj_dim(&args.weights)?.or(Some(0)),
        device: device.clone(),
        seed: args.seed,
        ..LoadOptions::default()
    };
    let started = Instant::now();
    let (model, report) = Model::load(&args.weights, &opts)?;
    print!("{report}");
    println!("loaded in {:.2} s", started.elapsed().as_secs_f64());

    let config = model.config();
    let (x, random) = match &args.input {
        Some(path) => (read_input(path)?, false),
        None => {
            let side = config.image_size();
            let shape = [args.batch, config.in_chans(), side, side];
            (
                Tensor::randn(shape, 1.0, args.seed, DType::F32, &clce_engine::Device::Cpu)?,
                true,
            )
        }
    };
    let x_dev = x.to_device(&device)?;
    let mode = if args.train_mode {
        Mode::train(args.seed)
    } else {
        Mode::Eval
    };
    let started = Instant::now();
    let out = {
        let _g = no_grad();
        model.forward(&x_dev, mode)?
    };
    let logits = out.logits.to_vec_f32()?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{} input {:?} on {device}, {} mode: logits {:?}, pooled {:?} in {:.3} s",
        if random { "random" } else { "file" },
        x.dims(),
        if args.train_mode { "train" } else { "eval" },
        out.logits.dims(),
        out.pooled.dims(),
        elapsed
    );

    if let Some(path) = &args.output {
        let mut tensors = BTreeMap::new();
        let mut put = |name: &str, t: &Tensor, values: Vec<f32>| {
            tensors.insert(name.to_string(), FileTensor::f32(t.dims().to_vec(), values));
        };
        put("logits", &out.logits, logits);
        put("pooled", &out.pooled, out.pooled.to_vec_f32()?);
        if config.proj_dim > 0 {
            put("projection", &out.projection, out.projection.to_vec_f32()?);
        }
        if random {
            put("input", &x, x.to_vec_f32()?);
        }
        let metadata = BTreeMap::from([("mode".to_string(), format!("{mode:?}"))]);
        Checkpoint { tensors, metadata }.write(path)?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The tensor `input` of a safetensors file, or its only tensor.
fn read_input(path: &PathBuf) -> Result<Tensor, Box<dyn std::error::Error>> {
    let mut file = Checkpoint::read(path)?;
    let name = if file.tensors.contains_key("input") || file.tensors.len() != 1 {
        "input".to_string()
    } else {
        file.tensors.keys().next().cloned().unwrap_or_default()
    };
    let Some(t) = file.tensors.remove(&name) else {
        let names: Vec<_> = file.tensors.keys().cloned().collect();
        return Err(format!(
            "{}: no tensor named input (the file has {})",
            path.display(),
            names.join(", ")
        )
        .into());
    };
    let Values::F32(values) = t.values else {
        return Err(format!("{}: {name} holds integers, not images", path.display()).into());
    };
    Ok(Tensor::from_vec(
        values,
        t.shape,
        &clce_engine::Device::Cpu,
    )?)
}
