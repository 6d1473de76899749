//! `metrics.jsonl`: one JSON object per logged step and per finished epoch, appended as the
//! run goes (and printed on stdout with `--json`).
//!
//! ```text
//! {"kind":"step","epoch":1,"step":10,"loss":2.31,"lr":0.00021,"grad_norm":1.7,"images_per_s":410.2}
//! {"kind":"epoch","epoch":1,"step":40,"loss":2.05,"lr":0.0007,"train_top1":0.31,"test_top1":0.45,"test_top5":0.88,...}
//! ```
//! `epoch` counts from 1, `step` is the number of optimiser steps done, accuracies are
//! fractions. With `--fewshot-eval`, epoch lines also carry `fewshot_val_1shot`,
//! `fewshot_val_1shot_ci95`, `fewshot_val_5shot` and `fewshot_val_5shot_ci95` (fractions too).
//! With `--precision f16`, step lines also carry `loss_scale` (for the next step) and
//! `skipped_steps` (so far, steps whose scaled gradient overflowed and that changed nothing).
//! Epoch lines carry `peak_mem_bytes`, the largest tensor memory of the epoch's training
//! steps. Timing fields (`images_per_s`, `seconds`) and `peak_mem_bytes` (which counts what
//! else the process holds) are the only ones that differ between two runs of the same
//! configuration.
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::eval::confidence::MeanCi;

use super::error::{Result, TrainError};
use super::fewshot::FewShotScores;
use super::run_dir::write_atomic;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Step(StepRecord),
    Epoch(EpochRecord),
}

/// A logged optimiser step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub epoch: usize,
    pub step: usize,
    /// The objective on this step's batch.
    pub loss: f64,
    /// The lr of this step (before each group's layer-decay scale).
    pub lr: f64,
    /// Global L2 norm of the gradient, before clipping. Not finite on a step skipped by loss
    /// scaling: JSON has no infinity, so it is written `null` and read back as infinity.
    #[serde(deserialize_with = "null_is_infinite")]
    pub grad_norm: f64,
    pub images_per_s: f64,
    /// `--precision f16`: the loss scale the next step will use, and the steps skipped so
    /// far because their scaled gradients overflowed (absent without loss scaling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_steps: Option<usize>,
}

/// A finished epoch, evaluated on the test split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub step: usize,
    /// Mean objective over the epoch's steps.
    pub loss: f64,
    /// The lr of the epoch's last step.
    pub lr: f64,
    /// Top-1 of the classifier on the epoch's augmented training views.
    pub train_top1: f64,
    pub test_top1: f64,
    pub test_top5: f64,
    /// Whether this epoch has the best test top-1 so far (and was saved as best.safetensors).
    pub best: bool,
    /// Wall-clock seconds of the epoch's training steps (evaluation excluded).
    pub seconds: f64,
    pub images_per_s: f64,
    /// The largest tensor memory of the epoch's training steps on the training device, in
    /// bytes (`torch.cuda.max_memory_allocated`; on the CPU, all tensor storage of the
    /// process). Absent in runs made before it was recorded.
    #[serde(default)]
    pub peak_mem_bytes: u64,
    /// `--fewshot-eval`: mean 5-way 1-shot and 5-shot accuracy on the few-shot split and the
    /// half-widths of their 95% intervals; absent without the flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fewshot_val_1shot: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fewshot_val_1shot_ci95: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fewshot_val_5shot: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fewshot_val_5shot_ci95: Option<f64>,
}

impl EpochRecord {
    /// The few-shot scores, if this epoch has them.
    pub fn fewshot(&self) -> Option<FewShotScores> {
        let ci = |mean: Option<f64>, ci95: Option<f64>| {
            Some(MeanCi {
                mean: mean?,
                ci95: ci95?,
            })
        };
        Some(FewShotScores {
            one_shot: ci(self.fewshot_val_1shot, self.fewshot_val_1shot_ci95)?,
            five_shot: ci(self.fewshot_val_5shot, self.fewshot_val_5shot_ci95)?,
        })
    }
}

fn null_is_infinite<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
}

impl Record {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a metrics record serialises")
    }
}

/// The open `metrics.jsonl` of a run.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Starts the log of a new run (an empty file).
    pub fn create(path: &Path) -> Result<MetricsLog> {
        write_atomic(path, b"")?;
        Self::append_to(path)
    }

    /// Continues the log of a resumed run. Lines written after the checkpoint being resumed
    /// from (the run went on, then crashed) are dropped, so that the resumed run's lines
    /// follow on without repeats: steps up to `step`, epochs before `epoch` (1-based, the
    /// epoch being resumed) are kept. A last line cut short by a crash is dropped too.
    pub fn resume(path: &Path, epoch: usize, step: usize) -> Result<MetricsLog> {
        let kept: Vec<Record> = if path.exists() {
            parse(path, true)?
                .into_iter()
                .filter(|r| match r {
                    Record::Step(s) => s.step <= step,
                    Record::Epoch(e) => e.epoch < epoch,
                })
                .collect()
        } else {
            Vec::new()
        };
        let text: String = kept.iter().map(|r| r.to_json() + "\n").collect();
        write_atomic(path, text.as_bytes())?;
        Self::append_to(path)
    }

    fn append_to(path: &Path) -> Result<MetricsLog> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| TrainError::io(path, e))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one line, flushed, so the file is complete up to the last record at any time.
    pub fn write(&mut self, record: &Record) -> Result<()> {
        writeln!(self.file, "{}", record.to_json())
            .and_then(|()| self.file.flush())
            .map_err(|e| TrainError::io(&self.path, e))
    }
}

/// Every record of a metrics file.
pub fn read(path: &Path) -> Result<Vec<Record>> {
    parse(path, false)
}

fn parse(path: &Path, forgive_cut_last_line: bool) -> Result<Vec<Record>> {
    let file = fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<std::io::Result<_>>()
        .map_err(|e| TrainError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(record) => out.push(record),
            Err(_) if forgive_cut_last_line && i + 1 == lines.len() => {}
            Err(e) => {
                return Err(TrainError::corrupt(
                    path,
                    format!("line {} is not a metrics record: {e}", i + 1),
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(epoch: usize, step: usize) -> Record {
        Record::Step(StepRecord {
            epoch,
            step,
            loss: 1.0 / step as f64,
            lr: 1e-3,
            grad_norm: 0.5,
            images_per_s: 100.0,
            loss_scale: None,
            skipped_steps: None,
        })
    }

    fn epoch(epoch: usize, step: usize) -> Record {
        Record::Epoch(EpochRecord {
            epoch,
            step,
            loss: 0.7,
            lr: 1e-4,
            train_top1: 0.5,
            test_top1: 0.25,
            test_top5: 0.75,
            best: true,
            seconds: 1.5,
            images_per_s: 90.0,
            peak_mem_bytes: 1 << 30,
            fewshot_val_1shot: None,
            fewshot_val_1shot_ci95: None,
            fewshot_val_5shot: None,
            fewshot_val_5shot_ci95: None,
        })
    }

    #[test]
    fn records_round_trip_with_their_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::create(&path).unwrap();
        let records = [step(1, 1), step(1, 2), epoch(1, 2)];
        for r in &records {
            log.write(r).unwrap();
        }
        let text = fs::read_to_string(&path).unwrap();
        assert!(text
            .lines()
            .next()
            .unwrap()
            .starts_with(r#"{"kind":"step","epoch":1,"step":1,"#));
        assert!(text.lines().nth(2).unwrap().contains(r#""test_top1":0.25"#));
        assert_eq!(read(&path).unwrap(), records);
    }

    #[test]
    fn fewshot_fields_are_written_only_when_measured() {
        let Record::Epoch(plain) = epoch(1, 2) else {
            unreachable!()
        };
        let line = Record::Epoch(plain.clone()).to_json();
        assert!(!line.contains("fewshot"), "{line}");
        assert_eq!(plain.fewshot(), None);
        let scored = EpochRecord {
            fewshot_val_1shot: Some(0.5),
            fewshot_val_1shot_ci95: Some(0.02),
            fewshot_val_5shot: Some(0.75),
            fewshot_val_5shot_ci95: Some(0.01),
            ..plain
        };
        let line = Record::Epoch(scored.clone()).to_json();
        assert!(line.contains(r#""fewshot_val_5shot_ci95":0.01"#), "{line}");
        let back: Record = serde_json::from_str(&line).unwrap();
        assert_eq!(back, Record::Epoch(scored.clone()));
        let five = scored.fewshot().unwrap().five_shot;
        assert_eq!((five.mean, five.ci95), (0.75, 0.01));
    }

    #[test]
    fn resuming_drops_what_came_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::create(&path).unwrap();
        // Epoch 1 ran to step 4; epoch 2 logged steps 5 and 6 and ended at 8, but the last
        // checkpoint was taken mid-epoch 2 after step 5.
        for r in [
            step(1, 2),
            step(1, 4),
            epoch(1, 4),
            step(2, 5),
            step(2, 6),
            epoch(2, 8),
        ] {
            log.write(&r).unwrap();
        }
        drop(log);
        let mut log = MetricsLog::resume(&path, 2, 5).unwrap();
        log.write(&step(2, 6)).unwrap();
        assert_eq!(
            read(&path).unwrap(),
            [step(1, 2), step(1, 4), epoch(1, 4), step(2, 5), step(2, 6)]
        );
    }

    #[test]
    fn a_damaged_line_is_reported_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        fs::write(&path, format!("{}\n{{\"kind\":\"st", step(1, 1).to_json())).unwrap();
        let msg = read(&path).unwrap_err().to_string();
        assert!(msg.contains("line 2"), "{msg}");
        // Resuming forgives a last line cut short by a crash, and only that.
        drop(MetricsLog::resume(&path, 1, 1).unwrap());
        assert_eq!(read(&path).unwrap(), [step(1, 1)]);
        fs::write(
            &path,
            format!("{{\"kind\":\"st\n{}\n", step(1, 1).to_json()),
        )
        .unwrap();
        assert!(MetricsLog::resume(&path, 1, 1).is_err());
    }
}
