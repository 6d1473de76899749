//! `clce-cli plot runs/NAME`: training curves from the run's `metrics.jsonl`, written as PNG
//! next to it: `loss.png` (training loss per logged step), `accuracy.png` (test top-1/top-5
//! per epoch, in percent) and `lr.png` (learning rate per step).
use std::path::PathBuf;
use std::process::ExitCode;

use clce_cli::eval::metrics_log::{self, Record};
use clce_cli::eval::plot::{line_chart, LegendCorner, Series};

use super::CmdResult;

#[derive(clap::Args)]
pub struct Args {
    /// The run's folder (holding metrics.jsonl).
    run: PathBuf,
}

pub fn run(args: Args) -> CmdResult {
    let metrics = args.run.join("metrics.jsonl");
    if !metrics.is_file() {
        return Err(format!(
            "{} not found: `clce-cli plot` reads the metrics.jsonl of a training run folder",
            metrics.display()
        )
        .into());
    }
    let records = metrics_log::read(&metrics)?;
    let mut written = Vec::new();

    // Epoch lines may repeat the loss and lr as an epoch summary; the per-step curves use the
    // step lines when there are any.
    let step_lines: Vec<&Record> = records.iter().filter(|r| !r.is_epoch_line()).collect();
    let per_step: Vec<&Record> = if step_lines.is_empty() {
        records.iter().collect()
    } else {
        step_lines
    };
    let series = |label: &str, points: Vec<(f64, f64)>| Series {
        label: label.into(),
        points,
    };
    let loss: Vec<(f64, f64)> = per_step
        .iter()
        .filter_map(|r| Some((r.step, r.loss?)))
        .collect();
    if !loss.is_empty() {
        let path = args.run.join("loss.png");
        line_chart(
            &path,
            "Training loss",
            ("step", "loss"),
            &[series("train loss", loss)],
            false,
            LegendCorner::UpperRight,
        )?;
        written.push(path);
    }

    let top1: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| Some((r.epoch, 100.0 * r.test_top1?)))
        .collect();
    let top5: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| Some((r.epoch, 100.0 * r.test_top5?)))
        .collect();
    if !top1.is_empty() || !top5.is_empty() {
        let path = args.run.join("accuracy.png");
        let curves: Vec<Series> = [("test top-1", top1), ("test top-5", top5)]
            .into_iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(label, p)| series(label, p))
            .collect();
        line_chart(
            &path,
            "Test accuracy",
            ("epoch", "accuracy (%)"),
            &curves,
            false,
            LegendCorner::LowerRight,
        )?;
        written.push(path);
    }

    let lr: Vec<(f64, f64)> = per_step
        .iter()
        .filter_map(|r| Some((r.step, r.lr?)))
        .collect();
    if !lr.is_empty() {
        let path = args.run.join("lr.png");
        line_chart(
            &path,
            "Learning rate",
            ("step", "learning rate"),
            &[series("lr", lr)],
            false,
            LegendCorner::UpperRight,
        )?;
        written.push(path);
    }

    if written.is_empty() {
        return Err(format!(
            "{} has no loss, lr or test accuracy values to plot",
            metrics.display()
        )
        .into());
    }
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
