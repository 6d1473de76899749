//! `clce-cli eval`: top-1, top-5 and per-class accuracy of a saved model on a split.
//!
//! Given a checkpoint of a run directory (`runs/NAME/best.safetensors`), the data set, input
//! size and data directory default to the run's; flags override them.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clce_models::{LoadOptions, Model};
use serde_json::json;

use super::CmdResult;
use crate::device_arg::DeviceArg;
use clce_cli::data::{DataSpec, Dataset};
use clce_cli::train::eval::{evaluate, per_class_json, per_class_rows, per_class_table, EvalViews};
use clce_cli::train::model::{facts, normalization, Finetuned};
use clce_cli::train::progress::{OutputMode, Reporter};
use clce_cli::train::{RunDir, TrainConfig, TrainError};

#[derive(clap::Args)]
pub struct Args {
    /// A preset the file must match (beit-base, resnet-101, ...), or beit / resnet [whatever
    /// the file holds].
    #[arg(long)]
    model: Option<String>,
    /// The checkpoint to evaluate (safetensors; timm, torchvision, transformers or clce).
    #[arg(long, value_name = "FILE")]
    weights: PathBuf,
    /// Data set, as for finetune [the run's, when FILE is in a run directory; else cifar100].
    #[arg(long)]
    data: Option<String>,
    /// Where CIFAR's files are looked for [the run's, else data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Which split: test or train [test].
    #[arg(long, default_value = "test", value_parser = ["test", "train"])]
    split: String,
    /// Input side in pixels [the run's, else the model's].
    #[arg(long)]
    image_size: Option<usize>,
    /// Images per batch.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    #[command(flatten)]
    device: DeviceArg,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> CmdResult {
    let device = args.device.resolve()?;
    let mode = if args.json {
        OutputMode::Json
    } else {
        OutputMode::Normal
    };
    let mut reporter = Reporter::new(mode);
    let run_cfg = run_config_beside(&args.weights)?;

    let opts = LoadOptions {
        model: args.model.clone(),
        // The classifier is what is evaluated; the projection head is not needed.
        proj_dim: Some(0),
        device: device.clone(),
        ..LoadOptions::default()
    };
    let (model, report) = Model::load(&args.weights, &opts)?;
    reporter.info(report.to_string().trim_end());
    let config = model.config().clone();

    let spec = args
        .data
        .clone()
        .or(run_cfg.as_ref().map(|c| c.data.clone()))
        .unwrap_or_else(|| "cifar100".into());
    let data_dir = args
        .data_dir
        .clone()
        .or(run_cfg.as_ref().map(|c| c.data_dir.clone()))
        .unwrap_or_else(|| PathBuf::from("data"));
    let flags = clce_cli::train::TrainFlags {
        image_size: args.image_size.or(run_cfg.as_ref().map(|c| c.image_size)),
        ..Default::default()
    };
    let image_size = flags.image_size(&facts(&config))?;
    let spec: DataSpec = spec.parse()?;
    let data = Dataset::open(&spec, &data_dir, image_size)?;
    if config.num_classes < data.num_classes() {
        return Err(TrainError::Invalid(format!(
            "{} has a {}-class head but the data has {} classes",
            args.weights.display(),
            config.num_classes,
            data.num_classes()
        ))
        .into());
    }
    let split = match args.split.as_str() {
        "train" => &data.train,
        _ => &data.test,
    };
    let views = EvalViews {
        batch_size: args.batch_size,
        image_size,
        norm: normalization(&config),
    };
    let net = Finetuned {
        model,
        frozen_backbone: false,
    };
    reporter.start_bar(
        args.split.clone(),
        split.len().div_ceil(args.batch_size.max(1)),
    );
    let tally = evaluate(
        &net,
        split,
        config.num_classes,
        &views,
        &device,
        &mut |done, _| reporter.advance_bar(done, String::new()),
    );
    reporter.finish_bar();
    let tally = tally?;

    let rows = per_class_rows(&data.class_names, &tally);
    reporter.info(&per_class_table(&rows));
    reporter.result(&format!(
        "{} split, {} images: top-1 {:.2}%, top-5 {:.2}%",
        args.split,
        tally.images(),
        100.0 * tally.top1(),
        100.0 * tally.top5()
    ));
    reporter.event(&json!({
        "weights": args.weights,
        "split": args.split,
        "images": tally.images(),
        "top1": tally.top1(),
        "top5": tally.top5(),
        "per_class": per_class_json(&rows),
    }));
    Ok(ExitCode::SUCCESS)
}

/// The configuration of the run whose directory holds `weights`, if it is in one.
/// The configuration of the run whose folder holds `weights`, if it is in one (a folder
/// with a config.json). A config.json that does not read is an error, not a silent
/// fallback to the defaults (which would evaluate on another data set).
fn run_config_beside(weights: &Path) -> Result<Option<TrainConfig>, TrainError> {
    let Some(dir) = weights.parent() else {
        return Ok(None);
    };
    if !dir.join("config.json").is_file() {
        return Ok(None);
    }
    RunDir::open(dir).map(|(_, cfg)| Some(cfg)).map_err(|e| {
        TrainError::Invalid(format!(
            "{e}; eval takes the data set and image size from the run folder's config.json: \
             repair or remove it, or give --data and --image-size"
        ))
    })
}
