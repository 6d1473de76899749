//! What a new user meets first, end to end (issue 19): checkpoints that timm loads as saved,
//! weights and results that are not finite, runs that fail before their first checkpoint,
//! messages that name the real problem, and no noise from the GPU probe.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clce_engine::{Device, Tensor};
use clce_models::model::proj_head_path;
use clce_models::{Model, ModelConfig, SaveOptions};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

const DATA: &str = "synthetic:classes=4,train=16,test=4";

#[path = "../common/run.rs"]
mod run;
use run::{clce, text};

/// Asserts that `out` failed cleanly (exit 1, no panic) with every one of `needles` in its
/// error message.
fn assert_error(out: &Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{}", text(out));
    for n in needles {
        assert!(stderr.contains(n), "should say {n:?}: {}", text(out));
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A short resnet-tiny run on the CPU, from random weights without the gradient check, with
/// `extra` flags (replacing the defaults of the same name).
fn short_run(out: &Path, extra: &[&str]) -> Output {
    let defaults = [
        ("--model", "resnet-tiny"),
        ("--image-size", "32"),
        ("--data", DATA),
        ("--batch-size", "16"),
        ("--epochs", "2"),
        ("--warmup-epochs", "0.5"),
        ("--device", "cpu"),
        ("--out", s(out)),
    ];
    let mut args = vec!["finetune", "--no-gradcheck", "--quiet"];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    clce(&args)
}

fn tensor_names(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = file.names().into_iter().map(str::to_string).collect();
    names.sort();
    names
}

// ------------------------------------------------------------------ checkpoints for timm

/// The run's model files hold exactly what timm's strict loading expects (no `proj.*`); the
/// projection head is beside them and comes back on `--resume`, `eval`, `forward`, `embed`.
/// A single file of an earlier version, with the head inside, still loads.
#[test]
fn checkpoints_hold_only_timm_tensors_and_keep_the_head_beside() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = short_run(&run, &["--stop-after-steps", "1"]);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let last = run.join("last.safetensors");
    let head = run.join("last.proj_head.safetensors");
    assert!(tensor_names(&last).iter().all(|n| !n.starts_with("proj.")));
    assert!(tensor_names(&last).contains(&"fc.weight".to_string()));
    assert_eq!(
        tensor_names(&head),
        [
            "proj.0.bias",
            "proj.0.weight",
            "proj.2.bias",
            "proj.2.weight"
        ]
    );
    // --resume reads both (the fingerprint covers the head too) and finishes the run.
    let out = clce(&["finetune", "--resume", s(&run), "--quiet"]);
    assert!(out.status.success(), "{}", text(&out));
    let best = run.join("best.safetensors");
    assert!(tensor_names(&best).iter().all(|n| !n.starts_with("proj.")));
    assert!(run.join("best.proj_head.safetensors").exists());

    // The head is read back: forward reports where it came from.
    let out = clce(&[
        "forward",
        "--model",
        "resnet-tiny",
        "--weights",
        s(&best),
        "--device",
        "cpu",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("projection head (4 tensors) read from"),
        "{}",
        text(&out)
    );

    // An earlier version's single file (head inside) loads as before.
    let config = ModelConfig::preset("resnet-tiny").unwrap();
    let model = Model::new(config, &Device::Cpu, 3).unwrap();
    let single = dir.path().join("single.safetensors");
    model.save(&single, &SaveOptions::default()).unwrap();
    assert!(tensor_names(&single).contains(&"proj.2.weight".to_string()));
    let out = clce(&[
        "eval",
        "--weights",
        s(&single),
        "--data",
        DATA,
        "--image-size",
        "32",
        "--device",
        "cpu",
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

// ------------------------------------------------------------------ NaN and infinity

/// resnet-tiny with `bad` NaN values in fc.weight and one infinity in conv1.weight.
fn poisoned_model(dir: &Path, bad: usize) -> PathBuf {
    let model = Model::new(ModelConfig::preset("resnet-tiny").unwrap(), &Device::Cpu, 0).unwrap();
    let poison = |name: &str, count: usize, value: f32| {
        let t = model.store().get(name).unwrap();
        let mut v = t.to_vec_f32().unwrap();
        v[..count].fill(value);
        t.assign(&Tensor::from_vec(v, t.dims().to_vec(), &Device::Cpu).unwrap())
            .unwrap();
    };
    poison("fc.weight", bad, f32::NAN);
    poison("conv1.weight", 1, f32::INFINITY);
    let path = dir.join("poisoned.safetensors");
    model
        .save_with_head(&path, proj_head_path(&path), &SaveOptions::default())
        .unwrap();
    path
}

#[test]
fn non_finite_weights_are_refused_naming_each_tensor_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let weights = poisoned_model(dir.path(), 3);
    let w = s(&weights);
    let named = [
        "fc.weight: 3 of",
        "3 NaN",
        "conv1.weight: 1 of",
        "1 infinite",
    ];
    let forward = ["forward", "--model", "resnet-tiny", "--weights", w];
    assert_error(
        &clce(&[&forward[..], &["--device", "cpu"]].concat()),
        &named,
    );
    let eval = ["eval", "--weights", w, "--data", DATA, "--image-size", "32"];
    assert_error(&clce(&[&eval[..], &["--device", "cpu"]].concat()), &named);
    let converted = dir.path().join("converted.safetensors");
    assert_error(&clce(&["convert", w, s(&converted)]), &named);
    assert!(!converted.exists());
    // As a starting point for fine-tuning: refused before the run folder is made, and not
    // blamed on the learning rate.
    let run = dir.path().join("run");
    let out = short_run(&run, &["--weights", w]);
    assert_error(&out, &named);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("--lr"));
    assert!(!run.exists());
}

/// Writes a `clce-cli loss` input: features [4, 3] (with `nan` NaNs), labels, logits [4, 2].
fn loss_input(path: &Path, nan: usize) {
    let mut features: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
    features[..nan].fill(f32::NAN);
    let labels: Vec<i64> = vec![0, 1, 0, 1];
    let logits: Vec<f32> = (0..8).map(|i| (i as f32 * 0.11).cos()).collect();
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let (f, l, g) = (
        bytes(&features),
        labels
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<u8>>(),
        bytes(&logits),
    );
    let views = vec![
        (
            "features",
            TensorView::new(Dtype::F32, vec![4, 3], &f).unwrap(),
        ),
        ("labels", TensorView::new(Dtype::I64, vec![4], &l).unwrap()),
        (
            "logits",
            TensorView::new(Dtype::F32, vec![4, 2], &g).unwrap(),
        ),
    ];
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn loss_reports_non_finite_results_and_never_overwrites_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("batch.safetensors");
    loss_input(&input, 2);
    let out = clce(&["loss", "--input", s(&input), "--device", "cpu"]);
    assert_error(
        &out,
        &["loss is NaN", "features holds 2 NaN or infinite values"],
    );

    loss_input(&input, 0);
    let before = std::fs::read(&input).unwrap();
    let same = dir.path().join(".").join("batch.safetensors");
    let out = clce(&["loss", "--input", s(&input), "--output", s(&same)]);
    assert_error(&out, &["is the input file"]);
    assert_eq!(
        std::fs::read(&input).unwrap(),
        before,
        "the input is intact"
    );
    // A temperature that underflows every similarity gives a loss of NaN from finite inputs.
    let out = clce(&["loss", "--input", s(&input), "--tau", "1e-300"]);
    assert_error(&out, &["the inputs are finite", "--tau"]);
    // A negative number is a value, not a flag.
    let out = clce(&["loss", "--input", s(&input), "--tau", "-0.5"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("unexpected argument"));
}

// ------------------------------------------------------------------ dead ends

/// A run that stops before its first checkpoint leaves a folder `--out` reuses (saying so),
/// and `--resume` of it says to do that; a failure that can be seen before the folder is
/// made leaves none.
#[test]
fn a_run_without_a_checkpoint_does_not_block_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    assert_error(&short_run(&run, &["--loss", "nope"]), &["nope"]);
    assert!(!run.exists(), "refused before the run folder is made");

    // A run whose first step failed: config.json and metrics.jsonl, no checkpoint.
    let out = short_run(&run, &["--epochs", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    for f in std::fs::read_dir(&run).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "safetensors") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let out = clce(&["finetune", "--resume", s(&run)]);
    assert_error(&out, &["no checkpoint", "--out"]);
    let out = short_run(&run, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("starting over in it"),
        "{}",
        text(&out)
    );
    assert!(run.join("last.safetensors").exists());
    // Now it holds a checkpoint: refused, pointing at --resume.
    assert_error(&short_run(&run, &[]), &["--resume"]);

    // --out naming a file.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert_error(&short_run(&file, &[]), &["is a file"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

/// Settings that train but not as meant are flagged: a warm-up as long as the run, and the
/// run's own device on --resume (a CPU run does not probe for a GPU).
#[test]
fn warm_up_past_the_run_warns_and_resume_keeps_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = short_run(
        &run,
        &[
            "--warmup-epochs",
            "3",
            "--stop-after-steps",
            "1",
            "--batch-size",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("never reaches --lr"), "{}", text(&out));
    // --batch-size 1 scales the lr below the default --min-lr, which the user did not set.
    assert!(!stderr.contains("--min-lr"), "{}", text(&out));
    let out = clce(&["finetune", "--resume", s(&run), "--quiet"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("running on the CPU"),
        "resuming a CPU run probed for a GPU: {}",
        text(&out)
    );
}

// ------------------------------------------------------------------ messages

#[test]
fn messages_name_the_real_problem() {
    let dir = tempfile::tempdir().unwrap();
    // eval next to a broken config.json: an error, not a silent switch to CIFAR-100.
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let model = Model::new(ModelConfig::preset("resnet-tiny").unwrap(), &Device::Cpu, 0).unwrap();
    let weights = run.join("best.safetensors");
    model
        .save_with_head(&weights, proj_head_path(&weights), &SaveOptions::default())
        .unwrap();
    std::fs::write(run.join("config.json"), "{ not json").unwrap();
    let out = clce(&["eval", "--weights", s(&weights), "--device", "cpu"]);
    assert_error(&out, &["config.json", "--data"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("CIFAR"));

    // The three gradient-check flags, each on its own.
    for (flag, value) in [
        ("--gradcheck-images", "1"),
        ("--gradcheck-coords", "0"),
        ("--gradcheck-tol", "0"),
    ] {
        let out = short_run(&dir.path().join("g"), &[flag, value]);
        assert_error(&out, &[flag]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let others = [
            "--gradcheck-images",
            "--gradcheck-coords",
            "--gradcheck-tol",
        ];
        for other in others.iter().filter(|&&o| o != flag) {
            assert!(!stderr.contains(other), "{flag}: {}", text(&out));
        }
    }
    let out = short_run(&dir.path().join("t"), &["--tau", "-0.5"]);
    assert_error(&out, &["--tau -0.5 must be above 0"]);

    // A 0-d classifier weight is one problem, reported once.
    let mut bytes_of = std::collections::BTreeMap::new();
    let file = std::fs::read(&weights).unwrap();
    let st = SafeTensors::deserialize(&file).unwrap();
    for (name, view) in st.tensors() {
        let entry = (view.dtype(), view.shape().to_vec(), view.data().to_vec());
        bytes_of.insert(name, entry);
    }
    let scalar = (Dtype::F32, vec![], 1.5f32.to_le_bytes().to_vec());
    bytes_of.insert("fc.weight".into(), scalar);
    let views: Vec<(String, TensorView)> = bytes_of
        .iter()
        .map(|(n, (dtype, shape, b))| {
            (
                n.clone(),
                TensorView::new(*dtype, shape.clone(), b).unwrap(),
            )
        })
        .collect();
    let scalar_head = dir.path().join("scalar_head.safetensors");
    std::fs::write(&scalar_head, safetensors::serialize(views, None).unwrap()).unwrap();
    let out = clce(&[
        "forward",
        "--model",
        "resnet-tiny",
        "--weights",
        s(&scalar_head),
        "--device",
        "cpu",
    ]);
    assert_error(&out, &["fc.weight"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("no classifier head"),
        "{}",
        text(&out)
    );

    // A header whose first tensor's data_offsets are wrong: that tensor is named, not the
    // next one.
    let a = [0u8; 8];
    let b = [0u8; 8];
    let good = safetensors::serialize(
        vec![
            ("a", TensorView::new(Dtype::F32, vec![2], &a).unwrap()),
            ("b", TensorView::new(Dtype::F32, vec![2], &b).unwrap()),
        ],
        None,
    )
    .unwrap();
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(good[8..8 + header_len].to_vec()).unwrap();
    // a: [0, 8] -> [0, 4]; the header keeps its length (one more space).
    let broken = header.replacen("\"data_offsets\":[0,8]", "\"data_offsets\":[0,4] ", 1);
    assert_ne!(broken, header, "{header}");
    let mut bytes = good[..8].to_vec();
    bytes.extend_from_slice(broken.as_bytes());
    bytes.extend_from_slice(&good[8 + header_len..]);
    let bad_offsets = dir.path().join("offsets.safetensors");
    std::fs::write(&bad_offsets, bytes).unwrap();
    let out = clce(&["inspect", s(&bad_offsets)]);
    assert_error(&out, &["tensor a:"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("tensor b"));
}

#[test]
fn analyze_refuses_what_it_cannot_analyse() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, n: usize, value: f32| -> PathBuf {
        let e: Vec<u8> = (0..n * 4)
            .flat_map(|i| {
                if value == 0.0 {
                    0.0f32
                } else {
                    value * (i % 5) as f32
                }
                .to_le_bytes()
            })
            .collect();
        let l: Vec<u8> = (0..n as i64).flat_map(|i| (i % 2).to_le_bytes()).collect();
        let views = vec![
            (
                "embeddings",
                TensorView::new(Dtype::F32, vec![n, 4], &e).unwrap(),
            ),
            ("labels", TensorView::new(Dtype::I64, vec![n], &l).unwrap()),
        ];
        let path = dir.path().join(name);
        std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
        path
    };
    let out_dir = dir.path().join("out");
    let analyze = |file: &Path, extra: &[&str]| {
        let mut args = vec!["analyze", "--embeddings", s(file), "--out", s(&out_dir)];
        args.extend_from_slice(extra);
        clce(&args)
    };
    let empty = write("empty.safetensors", 0, 1.0);
    let out = analyze(&empty, &[]);
    assert_error(&out, &["holds no embeddings"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("--classes"));
    let zeros = write("zeros.safetensors", 10, 0.0);
    assert_error(&analyze(&zeros, &[]), &["zero vectors"]);
    let fine = write("fine.safetensors", 10, 0.5);
    assert_error(&analyze(&fine, &["--perplexity", "nan"]), &["--perplexity"]);
    assert_error(
        &analyze(&fine, &["--tsne-iterations", "0"]),
        &["--tsne-iterations"],
    );
    assert!(!out_dir.exists(), "nothing written");
}

/// The Vulkan driver's "XDG_RUNTIME_DIR is invalid or not set" is not printed.
#[test]
fn the_gpu_probe_is_quiet() {
    let out = Command::new(env!("CARGO_BIN_EXE_clce-cli"))
        .arg("devices")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("XDG_RUNTIME_DIR"),
        "{}",
        text(&out)
    );
    // Each device names the precision `finetune` would default to there.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .next()
            .unwrap()
            .contains("default --precision f32"),
        "{stdout}"
    );
    for line in stdout.lines().filter(|l| l.contains("shader-f16 ")) {
        let f16 = line.contains("shader-f16 yes");
        let want = if f16 { "f16" } else { "f32" };
        assert!(
            line.ends_with(&format!("default --precision {want}")),
            "{line}"
        );
    }
}

// ------------------------------------------------------------------ the gradient check

/// On a small image folder (real decoded images, resized and augmented) the check passes on
/// correct code, and a planted wrong backward rule in relu is caught.
#[test]
fn the_gradient_check_passes_real_images_and_catches_a_wrong_rule() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    for split in ["train", "val"] {
        for class in 0..3u32 {
            let folder = root.join(split).join(format!("class{class}"));
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..6u32 {
                let img = image::RgbImage::from_fn(20, 20, |x, y| {
                    let v = (x * (class + 1) + y * (i + 2) + (x * y) % 7) % 256;
                    let byte = |k: u32| (k % 256) as u8;
                    image::Rgb([byte(v * 9), byte(255 + v * 5), byte(v * 3 + i * 20)])
                });
                img.save(folder.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    let data = format!("imagefolder:{}", root.display());
    let run = |out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let mut args = vec![
            "finetune",
            "--model",
            "resnet-tiny",
            "--image-size",
            "32",
            "--data",
            &data,
            "--batch-size",
            "8",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--stop-after-steps",
            "1",
            "--json",
            "--out",
            s(&out),
        ];
        args.extend_from_slice(extra);
        clce(&args)
    };
    for seed in ["0", "1"] {
        let out = run(&format!("ok{seed}"), &["--seed", seed]);
        assert_eq!(out.status.code(), Some(130), "{}", text(&out));
        let first: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap())
                .unwrap();
        assert_eq!(first["kind"], "gradcheck");
        assert_eq!(first["passed"], true, "{}", text(&out));
    }
    let out = run("wrong", &["--inject-wrong-relu-backward"]);
    assert_error(&out, &["gradient check failed"]);
}

/// A build without MPI refuses `--distributed` before anything is read or written, and says
/// how to get a build that has it.
#[cfg(not(feature = "distributed"))]
#[test]
fn distributed_without_mpi_says_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = short_run(&run, &["--distributed"]);
    assert_error(&out, &["--features distributed", "mpirun"]);
    assert!(!run.exists(), "nothing is written");
}
