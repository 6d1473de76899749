//! `mpirun -np 2 clce-cli finetune --distributed` end to end, on the CPU, with Open MPI
//! (`.ci/run` installs it; the tests exist only in a build with `--features distributed`).
//!
//! - Two ranks of 12 images train BEiT (drop path on) to the weights one process with 24
//!   images reaches, and rank 0 alone writes the run directory.
//! - A run stopped after a step and resumed with the same ranks repeats the uninterrupted one.
//! - An error on the ranks, and a rank killed mid-run, end every rank with a message naming
//!   the rank, and leave what was written whole.
#![cfg(feature = "distributed")]

#[path = "../common/run.rs"]
mod run;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use run::{clce, text};

/// Open MPI as the tests need it: as root in CI containers, more ranks than cores, no core
/// binding, no busy-waiting (ranks waiting in a collective would starve the working ones),
/// and no cross-memory attach (refused inside containers).
fn mpirun(ranks: usize) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args([
        "--oversubscribe",
        "--bind-to",
        "none",
        "-np",
        &ranks.to_string(),
    ])
    .arg(env!("CARGO_BIN_EXE_clce-cli"))
    .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
    .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    .env("OMPI_MCA_mpi_yield_when_idle", "1")
    .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
    .env("RAYON_NUM_THREADS", "1")
    .env_remove("CLCE_DEVICE");
    cmd
}

/// A BEiT run of 24 images per step on the synthetic set (48 training images: 2 steps an
/// epoch), logging every step.
fn args<'a>(out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "finetune",
        "--model",
        "beit-tiny",
        "--image-size",
        "32",
        "--data",
        "synthetic:classes=4,train=48,test=8",
        "--batch-size",
        "24",
        "--drop-path",
        "0.2",
        "--epochs",
        "2",
        "--lr",
        "5e-3",
        "--warmup-epochs",
        "0.5",
        "--log-every",
        "1",
        "--no-gradcheck",
        "--quiet",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

fn distributed(ranks: usize, out: &Path, extra: &[&str]) -> Output {
    let mut all = args(out, extra);
    all.push("--distributed");
    mpirun(ranks).args(&all).output().expect("mpirun runs")
}

/// The tensors of a checkpoint (and its projection head) by name, as f32 values.
fn weights(path: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let mut all = std::collections::BTreeMap::new();
    for file in [path.to_path_buf(), clce_models::model::proj_head_path(path)] {
        let bytes = std::fs::read(&file).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for (name, view) in st.tensors() {
            let values = match view.dtype() {
                safetensors::Dtype::F32 => bytemuck_f32(view.data()),
                _ => continue,
            };
            all.insert(name, values);
        }
    }
    all
}

fn bytemuck_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn assert_same_weights(a: &Path, b: &Path, tol: f64) {
    let (a, b) = (weights(a), weights(b));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, x) in &a {
        let y = &b[name];
        let diff: f64 = x
            .iter()
            .zip(y)
            .map(|(p, q)| (*p as f64 - *q as f64).powi(2))
            .sum();
        let norm: f64 = y.iter().map(|q| (*q as f64).powi(2)).sum();
        let r = (diff / norm.max(1e-30)).sqrt();
        assert!(r <= tol, "{name} differs by {r:.2e} (relative)");
    }
}

fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "step")
        .map(|v| v["loss"].as_f64().unwrap())
        .collect()
}

#[test]
fn two_ranks_train_the_weights_of_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let stop = ["--stop-after-steps", "3"];
    let out = clce(&args(&one, &stop));
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let out = distributed(2, &two, &stop);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    // Three steps: the same losses and the same weights, to f32 rounding.
    let (a, b) = (losses(&one), losses(&two));
    assert_eq!(a.len(), 3, "{a:?}");
    assert_eq!(b.len(), 3, "{b:?}");
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-5 * y.abs(), "losses {a:?} vs {b:?}");
    }
    assert_same_weights(
        &two.join("last.safetensors"),
        &one.join("last.safetensors"),
        1e-5,
    );
    // Rank 0 alone wrote: as many metrics lines as one process.
    let count = |run: &Path| {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(count(&two), count(&one));
}

#[test]
fn a_resumed_distributed_run_repeats_the_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let (straight, resumed) = (dir.path().join("straight"), dir.path().join("resumed"));
    let out = distributed(2, &straight, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let out = distributed(2, &resumed, &["--stop-after-steps", "1"]);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let out = mpirun(2)
        .args([
            "finetune",
            "--resume",
            resumed.to_str().unwrap(),
            "--quiet",
            "--distributed",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(losses(&resumed), losses(&straight));
    assert_same_weights(
        &resumed.join("last.safetensors"),
        &straight.join("last.safetensors"),
        0.0,
    );
}

#[test]
fn an_error_on_the_ranks_ends_every_rank_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // 24 images do not split over 5 ranks.
    let out = distributed(5, &run, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error on rank"), "{}", text(&out));
    assert!(err.contains("multiple of 5"), "{}", text(&out));
}

/// The pid of the rank-`rank` process that `mpirun` (pid `parent`) started.
fn rank_pid(parent: u32, rank: usize) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()? {
        let Ok(pid) = entry.ok()?.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Field 4, after the parenthesised command name, is the parent's pid.
        let ppid = stat.rsplit(')').next()?.split_whitespace().nth(1)?;
        if ppid != parent.to_string() {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
        if environ.split(|&b| b == 0).any(|v| v == wanted.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn a_killed_rank_ends_the_run_and_keeps_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut all = args(&run, &["--distributed"]);
    let epochs = all.iter().position(|a| *a == "--epochs").unwrap() + 1;
    all[epochs] = "50";
    let mut child = mpirun(2)
        .args(&all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first epoch's checkpoint, then kill rank 1.
    let started = Instant::now();
    while !run.join("last.safetensors").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoint after 300 s"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let pid = rank_pid(child.id(), 1).expect("rank 1's process");
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the other rank did not stop within 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rank 1"), "{}", text(&out));
    // What was written is whole: the checkpoint loads, every metrics line parses.
    assert!(!weights(&run.join("last.safetensors")).is_empty());
    let lines = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    for line in lines.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("a whole metrics line");
    }
}
