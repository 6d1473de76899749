//! `inspect`, `convert` and `forward` run as a user runs them, on the tiny parity fixtures.
use std::path::PathBuf;
use std::process::Command;

use clce_models::checkpoint::{Checkpoint, Values};

fn fixture(name: &str) -> PathBuf {
    clce_engine::fixtures::dir().join("models").join(name)
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clce-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the CLI; returns (success, stdout + stderr).
fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_clce-cli"))
        .args(args)
        .env("CLCE_DEVICE", "cpu")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn floats(file: &Checkpoint, name: &str) -> Vec<f32> {
    match &file.tensors[name].values {
        Values::F32(v) => v.clone(),
        Values::I64(_) => panic!("{name} is not float"),
    }
}

#[test]
fn convert_inspect_and_forward_reproduce_the_fixture() {
    let dir = scratch("convert");
    let hf = fixture("beit_hf_tiny.safetensors");
    let converted = dir.join("beit_timm.safetensors");
    let (ok, text) = cli(&["convert", hf.to_str().unwrap(), converted.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(
        text.contains("beit checkpoint in transformers naming"),
        "{text}"
    );

    let (ok, text) = cli(&["inspect", converted.to_str().unwrap()]);
    assert!(ok, "{text}");
    for expected in [
        "architecture: beit in timm naming",
        "preset: beit-tiny",
        "parameters: 113,706",
        "blocks.1.attn.qkv.weight",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    let io = fixture("beit_hf_tiny.io.safetensors");
    let out = dir.join("out.safetensors");
    let (ok, text) = cli(&[
        "forward",
        "--model",
        "beit-tiny",
        "--weights",
        converted.to_str().unwrap(),
        "--input",
        io.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let ours = Checkpoint::read(&out).unwrap();
    let reference = Checkpoint::read(&io).unwrap();
    for (name, reference_name) in [("logits", "eval.logits"), ("pooled", "eval.pooled")] {
        let (a, b) = (floats(&ours, name), floats(&reference, reference_name));
        let diff: f32 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f32>()
            .sqrt();
        let norm: f32 = b.iter().map(|y| y * y).sum::<f32>().sqrt();
        assert!(diff / norm < 1e-4, "{name}: {}", diff / norm);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn forward_with_random_input_and_clear_errors() {
    let dir = scratch("forward");
    let weights = fixture("resnet_timm_tiny.safetensors");
    let out = dir.join("out.safetensors");
    let (ok, text) = cli(&[
        "forward",
        "--model",
        "resnet",
        "--weights",
        weights.to_str().unwrap(),
        "--batch",
        "3",
        "--num-classes",
        "4",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("classifier head re-initialised"), "{text}");
    let written = Checkpoint::read(&out).unwrap();
    assert_eq!(written.tensors["logits"].shape, [3, 4]);
    assert_eq!(written.tensors["input"].shape, [3, 3, 224, 224]);

    let (ok, text) = cli(&[
        "forward",
        "--model",
        "beit-base",
        "--weights",
        weights.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(text.contains("holds a resnet, not a beit-base"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
