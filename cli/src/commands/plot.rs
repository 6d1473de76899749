//! `clce-cli plot runs/NAME`: training curves from the run's `metrics.jsonl`, written as PNG
//! next to it: `loss.png` (training loss per logged step), `accuracy.png` (test top-1/top-5
//! per epoch, in percent), `lr.png` (learning rate per step) and, for runs with
//! `--fewshot-eval`, `fewshot.png` (5-way 1-shot and 5-shot accuracy per epoch, in percent).
use std::path::PathBuf;
use std::process::ExitCode;

use clce_cli::eval::plot::{line_chart, LegendCorner, Series};
use clce_cli::train::metrics::{self, EpochRecord, Record};

use super::CmdResult;

#[derive(clap::Args)]
pub struct Args {
    /// The run's folder (holding metrics.jsonl).
    run: PathBuf,
}

pub fn run(args: Args) -> CmdResult {
    let path = args.run.join("metrics.jsonl");
    if !path.is_file() {
        return Err(format!(
            "{} not found: `clce-cli plot` reads the metrics.jsonl of a training run folder",
            path.display()
        )
        .into());
    }
    let records = metrics::read(&path)?;
    let steps: Vec<(f64, f64, f64)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Step(s) => Some((s.step as f64, s.loss, s.lr)),
            Record::Epoch(_) => None,
        })
        .collect();
    let epochs: Vec<&EpochRecord> = records
        .iter()
        .filter_map(|r| match r {
            Record::Epoch(e) => Some(e),
            Record::Step(_) => None,
        })
        .collect();
    // A run of fewer steps than --log-every logs no step lines; its epoch lines carry the
    // epoch's mean loss and last lr.
    let steps = if steps.is_empty() {
        epochs
            .iter()
            .map(|e| (e.step as f64, e.loss, e.lr))
            .collect()
    } else {
        steps
    };
    let per_epoch = |value: &dyn Fn(&EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        epochs
            .iter()
            .filter_map(|e| Some((e.epoch as f64, 100.0 * value(e)?)))
            .collect()
    };
    let series = |label: &str, points: Vec<(f64, f64)>| Series {
        label: label.into(),
        points,
    };
    // (file, title, axes, curves, legend corner); charts without points are not drawn.
    let charts = [
        (
            "loss.png",
            "Training loss",
            ("step", "loss"),
            vec![series(
                "train loss",
                steps.iter().map(|&(s, loss, _)| (s, loss)).collect(),
            )],
            LegendCorner::UpperRight,
        ),
        (
            "accuracy.png",
            "Test accuracy",
            ("epoch", "accuracy (%)"),
            vec![
                series("test top-1", per_epoch(&|e| Some(e.test_top1))),
                series("test top-5", per_epoch(&|e| Some(e.test_top5))),
            ],
            LegendCorner::LowerRight,
        ),
        (
            "lr.png",
            "Learning rate",
            ("step", "learning rate"),
            vec![series(
                "lr",
                steps.iter().map(|&(s, _, lr)| (s, lr)).collect(),
            )],
            LegendCorner::UpperRight,
        ),
        (
            "fewshot.png",
            "Few-shot accuracy (5-way, val)",
            ("epoch", "accuracy (%)"),
            vec![
                series("1-shot", per_epoch(&|e| e.fewshot_val_1shot)),
                series("5-shot", per_epoch(&|e| e.fewshot_val_5shot)),
            ],
            LegendCorner::LowerRight,
        ),
    ];
    let mut written = Vec::new();
    for (file, title, axes, curves, corner) in charts {
        let curves: Vec<Series> = curves
            .into_iter()
            .filter(|s| !s.points.is_empty())
            .collect();
        if curves.is_empty() {
            continue;
        }
        let out = args.run.join(file);
        line_chart(&out, title, axes, &curves, false, corner)?;
        written.push(out);
    }
    if written.is_empty() {
        return Err(format!("{} has no records to plot", path.display()).into());
    }
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
