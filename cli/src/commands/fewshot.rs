//! `clce-cli fewshot`: the paper's few-shot evaluation (Table 1). Features of every image of
//! the split are computed once; then, per shot setting, `--episodes` N-way K-shot episodes are
//! drawn (episode e seeded by e), a logistic regression (C = 1) is fitted on each support set
//! and scored on its queries. Prints mean accuracy ± 95% interval and can write them as JSON.
use std::path::PathBuf;
use std::process::ExitCode;

use clce_cli::eval::fewshot::{evaluate, FewShotConfig, ShotResult};
use clce_cli::eval::Embeddings;
use serde_json::json;

use super::features_args::{output_path, ModelArgs};
use super::CmdResult;
use crate::device_arg::DeviceArg;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: ModelArgs,
    /// Use these features (a file written by `clce-cli embed`) instead of running a model.
    #[arg(long, conflicts_with_all = ["weights", "model", "data"])]
    embeddings: Option<PathBuf>,
    /// Classes per episode (N).
    #[arg(long, default_value_t = 5)]
    ways: usize,
    /// Support images per class (K), one evaluation per value.
    #[arg(long, value_delimiter = ',', default_value = "1,5")]
    shots: Vec<usize>,
    /// Query images per class.
    #[arg(long, default_value_t = 15)]
    queries: usize,
    /// Episodes per shot setting (the paper: 3,000).
    #[arg(long, default_value_t = 3000)]
    episodes: usize,
    /// Seed of the episode draws (episode e uses the stream of (seed, e)).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Fit on the raw features instead of L2-normalised ones.
    #[arg(long)]
    no_normalize: bool,
    #[command(flatten)]
    device: DeviceArg,
}

pub fn run(args: Args) -> CmdResult {
    if let Some(path) = &args.json {
        output_path(path)?;
    }
    let (features, source) = match &args.embeddings {
        Some(path) => {
            let e = Embeddings::load(path)?;
            let what = format!(
                "{}: {} classes, {} embeddings",
                path.display(),
                e.num_classes(),
                e.len()
            );
            (e, what)
        }
        None => args.source.compute(&args.device.resolve()?)?,
    };
    let config = FewShotConfig {
        ways: args.ways,
        shots: args.shots.clone(),
        queries: args.queries,
        episodes: args.episodes,
        seed: args.seed,
        normalize: !args.no_normalize,
        ..FewShotConfig::default()
    };
    println!(
        "{source}; {}-d features, {}",
        features.dim,
        if config.normalize {
            "L2-normalised"
        } else {
            "raw"
        }
    );
    println!(
        "{}-way, {} queries per class, {} episodes, seed {}; logistic regression C = 1",
        config.ways, config.queries, config.episodes, config.seed
    );
    let results = evaluate(&features, &config)?;
    println!("{:>6}  {:>12}  {:>8}", "shots", "accuracy %", "95% CI");
    for r in &results {
        println!(
            "{:>6}  {:>12.2}  {:>8}",
            r.shots,
            r.accuracy.mean,
            format!("± {:.2}", r.accuracy.ci95)
        );
        if r.unconverged > 0 {
            eprintln!(
                "note: {} of {} {}-shot fits stopped before the gradient tolerance",
                r.unconverged, config.episodes, r.shots
            );
        }
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report(&source, &features, &config, &results))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON document `--json` writes (its shape is documented in the README).
fn report(
    source: &str,
    features: &Embeddings,
    config: &FewShotConfig,
    results: &[ShotResult],
) -> serde_json::Value {
    json!({
        "data": source,
        "feature_dim": features.dim,
        "normalized": config.normalize,
        "classifier": "multinomial logistic regression, L2, C = 1.0 (L-BFGS)",
        "seed": config.seed,
        "results": results.iter().map(|r| json!({
            "ways": config.ways,
            "shots": r.shots,
            "queries": config.queries,
            "episodes": config.episodes,
            "accuracy": r.accuracy.mean,
            "ci95": r.accuracy.ci95,
        })).collect::<Vec<_>>(),
    })
}
