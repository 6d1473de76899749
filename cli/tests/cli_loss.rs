//! `clce-cli loss` end to end: the PyTorch fixtures reproduced through the command line, and
//! clear errors (non-zero exit, no panic) for bad input files.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// A loss fixture file, as a path argument.
fn loss_fixture(name: &str) -> String {
    let path = clce_engine::fixtures::dir().join(format!("losses/{name}.safetensors"));
    path.to_str().unwrap().to_string()
}

fn clce_cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clce-cli"))
        .args(args)
        .env("CLCE_DEVICE", "cpu")
        .output()
        .unwrap()
}

fn scratch(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli_loss_{name}"))
}

/// Every tensor of a safetensors file as f64 values.
fn read_all(path: &Path) -> HashMap<String, Vec<f64>> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let values = match v.dtype() {
                Dtype::F32 => v
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
                    .collect(),
                Dtype::F64 => v
                    .data()
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
                _ => vec![],
            };
            (name, values)
        })
        .collect()
}

fn relative_error(actual: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(actual.len(), reference.len());
    let diff: f64 = actual
        .iter()
        .zip(reference)
        .map(|(a, r)| (a - r).powi(2))
        .sum::<f64>()
        .sqrt();
    diff / reference.iter().map(|r| r * r).sum::<f64>().sqrt()
}

#[test]
fn reproduces_the_pytorch_fixtures() {
    // (fixture, loss, fixture key, flags from the fixture's metadata)
    let runs: [(&str, &str, &str, &[&str]); 3] = [
        ("small", "clce", "clce", &[]),
        (
            "low_tau_beta2",
            "lacln",
            "lacln",
            &["--tau", "0.1", "--beta", "2"],
        ),
        ("low_tau_beta2", "ce", "ce", &[]),
    ];
    for (fixture, loss, key, flags) in runs {
        let input = loss_fixture(fixture);
        let output = scratch(&format!("{fixture}_{loss}.safetensors"));
        let mut args = vec!["loss", "--input", &input, "--loss", loss];
        args.extend_from_slice(flags);
        let out_path = output.to_str().unwrap();
        args.extend(["--output", out_path]);
        let run = clce_cli(&args);
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "{fixture} {loss}: {run:?}");
        assert!(stdout.contains(&format!("{loss} loss = ")), "{stdout}");

        let reference = read_all(Path::new(&input));
        let got = read_all(&output);
        let expected = reference[&format!("{key}.loss")][0];
        assert!(
            (got["loss"][0] - expected).abs() / expected < 1e-5,
            "{fixture} {loss}"
        );
        for grad in ["grad_features", "grad_logits"] {
            match reference.get(&format!("{key}.{grad}")) {
                Some(r) => assert!(
                    relative_error(&got[grad], r) < 1e-4,
                    "{fixture} {loss} {grad}"
                ),
                None => assert!(!got.contains_key(grad), "{fixture} {loss} wrote {grad}"),
            }
        }
    }
}

/// A safetensors file holding the given (name, dtype, shape, little-endian bytes).
fn write_file(name: &str, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> String {
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, dt, shape, bytes)| (*n, TensorView::new(*dt, shape.clone(), bytes).unwrap()))
        .collect();
    let path = scratch(name);
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

fn f32_bytes(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (i as f32 * 0.37).sin().to_le_bytes())
        .collect()
}

fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Runs `clce-cli loss ARGS`, expects a clean failure whose message contains `needle`.
fn fails_with(args: &[&str], needle: &str) {
    let mut all = vec!["loss"];
    all.extend_from_slice(args);
    let run = clce_cli(&all);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: expected {needle:?} in {stderr}"
    );
}

#[test]
fn bad_inputs_fail_with_clear_messages() {
    let labels = ("labels", Dtype::I64, vec![4], i64_bytes(&[0, 1, 0, 1]));
    let features = ("features", Dtype::F32, vec![4, 3], f32_bytes(12));
    let good = write_file("good.safetensors", &[features.clone(), labels.clone()]);

    fails_with(&["--input", "/no/such/file.safetensors"], "cannot read");
    let small = loss_fixture("small");
    let truncated = scratch("truncated.safetensors");
    std::fs::write(&truncated, &std::fs::read(&small).unwrap()[..200]).unwrap();
    fails_with(
        &["--input", truncated.to_str().unwrap()],
        "not a readable safetensors file",
    );
    fails_with(&["--input", &small, "--loss", "simclr"], "clce-nohnm");
    // `good` has no logits: fine for lacln, an error naming the tensor for clce.
    assert!(clce_cli(&["loss", "--input", &good, "--loss", "lacln"])
        .status
        .success());
    fails_with(&["--input", &good, "--loss", "clce"], "no tensor `logits`");
    let only_labels = write_file("only_labels.safetensors", std::slice::from_ref(&labels));
    fails_with(
        &["--input", &only_labels, "--loss", "lacln"],
        "no tensor `features`",
    );

    let f64_features = ("features", Dtype::F64, vec![4, 3], vec![0u8; 96]);
    let wrong_dtype = write_file("f64.safetensors", &[f64_features, labels.clone()]);
    fails_with(&["--input", &wrong_dtype, "--loss", "lacln"], "must be F32");
    let short_labels = ("labels", Dtype::I64, vec![3], i64_bytes(&[0, 1, 0]));
    let wrong_shape = write_file("shape.safetensors", &[features.clone(), short_labels]);
    fails_with(
        &["--input", &wrong_shape, "--loss", "lacln"],
        "must have shape [4]",
    );
    let negative = ("labels", Dtype::I32, vec![4], {
        [0i32, -2, 0, 1]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect()
    });
    let negative = write_file("negative.safetensors", &[features.clone(), negative]);
    fails_with(&["--input", &negative, "--loss", "lacln"], "labels[1] = -2");
    let logits = ("logits", Dtype::F32, vec![4, 1], f32_bytes(4));
    let few_classes = write_file("classes.safetensors", &[features, labels, logits]);
    fails_with(
        &["--input", &few_classes, "--loss", "ce"],
        "labels[1] = 1 is not a class",
    );
    fails_with(&["--input", &good, "--loss", "lacln", "--tau", "0"], "tau");
}
