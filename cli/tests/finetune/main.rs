//! End-to-end runs of `clce-cli finetune` and `clce-cli eval` on the built-in synthetic data,
//! on the CPU, with the tiny models: learning, resuming, the run directory, the checkpoint
//! files, and the errors users meet.
use std::path::Path;
use std::process::{Command, Output};

use clce_cli::train::metrics::{self, EpochRecord, Record};
use clce_models::{LoadOptions, Model};

/// 4 classes, 64 training and 16 test images each.
const DATA: &str = "synthetic:classes=4,train=64,test=16";

fn clce(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clce-cli"))
        .args(args)
        .env_remove("CLCE_DEVICE")
        .output()
        .expect("clce-cli runs")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A small but real run: resnet-tiny at 32 px, batch 32 (64 views), 8 steps per epoch.
fn finetune(out_dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "finetune",
        "--model",
        "resnet-tiny",
        "--image-size",
        "32",
        "--data",
        DATA,
        "--batch-size",
        "32",
        "--lr",
        "2e-3",
        "--warmup-epochs",
        "0.5",
        "--epochs",
        "3",
        "--device",
        "cpu",
        "--json",
        "--out",
        out_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    clce(&args)
}

fn epochs(run: &Path) -> Vec<EpochRecord> {
    metrics::read(&run.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Record::Epoch(e) => Some(e),
            Record::Step(_) => None,
        })
        .collect()
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

fn assert_learns(loss: &str) {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join(loss);
    let out = finetune(&run, &["--loss", loss]);
    assert!(out.status.success(), "{}", text(&out));
    let e = epochs(&run);
    assert_eq!(e.len(), 3, "{}", text(&out));
    assert!(
        e[2].loss < e[0].loss,
        "{loss}: loss {:?}",
        e.iter().map(|r| r.loss).collect::<Vec<_>>()
    );
    // Chance is 0.25.
    assert!(
        e[2].test_top1 >= 0.6,
        "{loss}: test top-1 {:?}",
        e.iter().map(|r| r.test_top1).collect::<Vec<_>>()
    );
    // --json: stdout is JSON lines only, ending with the result.
    let lines = json_lines(&out);
    assert_eq!(lines[0]["kind"], "gradcheck");
    assert_eq!(lines[0]["passed"], true);
    assert_eq!(lines.last().unwrap()["kind"], "done");
}

#[test]
fn cross_entropy_learns() {
    assert_learns("ce");
}

#[test]
fn clce_learns() {
    assert_learns("clce");
}
