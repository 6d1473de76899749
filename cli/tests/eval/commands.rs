//! `fewshot --embeddings`, `analyze` and `plot` run as a user runs them, on files written here;
//! malformed inputs must fail with a clear message and a non-zero exit code.
use std::path::Path;
use std::process::{Command, Output};

use clce_cli::eval::Embeddings;
use clce_cli::train::metrics::{EpochRecord, Record, StepRecord};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clce-cli"))
        .args(args)
        .env("CLCE_DEVICE", "cpu")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `classes` Gaussian clusters of `per_class` points in 24 dimensions around random centres.
fn clusters(classes: usize, per_class: usize) -> Embeddings {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let dim = 24;
    let centres: Vec<f32> = (0..classes * dim)
        .map(|_| Distribution::<f32>::sample(&StandardNormal, &mut rng))
        .collect();
    let mut values = Vec::new();
    let mut labels = Vec::new();
    for i in 0..classes * per_class {
        let c = i % classes;
        for k in 0..dim {
            let noise: f32 = StandardNormal.sample(&mut rng);
            values.push(centres[c * dim + k] + noise);
        }
        labels.push(c);
    }
    let names = (0..classes).map(|c| format!("class_{c}")).collect();
    Embeddings::new(values, dim, labels, names).unwrap()
}

fn write_clusters(dir: &Path) -> String {
    let path = dir.join("emb.safetensors");
    clusters(8, 40).save(&path).unwrap();
    path.to_str().unwrap().to_string()
}

/// Decodes a PNG and checks its size and that it is not blank.
fn check_png(path: &Path, width: u32, height: u32) {
    let image = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_rgb8();
    assert_eq!(image.dimensions(), (width, height), "{}", path.display());
    let colours: std::collections::HashSet<[u8; 3]> = image.pixels().map(|p| p.0).collect();
    assert!(colours.len() > 8, "{} is blank", path.display());
}

#[test]
fn fewshot_on_embeddings_prints_a_table_and_writes_json() {
    let tmp = tempfile::tempdir().unwrap();
    let emb = write_clusters(tmp.path());
    let json = tmp.path().join("fewshot.json");
    let out = cli(&[
        "fewshot",
        "--embeddings",
        &emb,
        "--episodes",
        "100",
        "--shots",
        "1,5",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("5-way") && text.contains("accuracy"),
        "{text}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for (r, shots) in results.iter().zip([1, 5]) {
        assert_eq!(r["shots"], shots);
        assert_eq!(r["ways"], 5);
        assert_eq!(r["episodes"], 100);
        let accuracy = r["accuracy"].as_f64().unwrap();
        // Chance is 20%; measured 84.6% (1-shot) and 97.6% (5-shot).
        assert!(accuracy > 60.0 && accuracy <= 100.0, "{r}");
        assert!(r["ci95"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(report["normalized"], true);
}

#[test]
fn fewshot_rejects_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let emb = write_clusters(tmp.path());
    let missing = cli(&["fewshot", "--embeddings", "/nonexistent/e.safetensors"]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("/nonexistent/e.safetensors"));
    // 9 ways from 8 classes.
    let ways = cli(&[
        "fewshot",
        "--embeddings",
        &emb,
        "--ways",
        "9",
        "--episodes",
        "5",
    ]);
    assert!(!ways.status.success());
    assert!(stderr(&ways).contains("9 classes"), "{}", stderr(&ways));
    // 40 images per class cannot give 30 shots + 15 queries.
    let shots = cli(&[
        "fewshot",
        "--embeddings",
        &emb,
        "--shots",
        "30",
        "--episodes",
        "5",
    ]);
    assert!(!shots.status.success());
    assert!(stderr(&shots).contains("40 images"), "{}", stderr(&shots));
    let nothing = cli(&["fewshot", "--episodes", "5"]);
    assert!(!nothing.status.success());
    assert!(
        stderr(&nothing).contains("--weights"),
        "{}",
        stderr(&nothing)
    );
}

#[test]
fn analyze_writes_figures_and_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let emb = write_clusters(tmp.path());
    let out_dir = tmp.path().join("analysis");
    let out = cli(&[
        "analyze",
        "--embeddings",
        &emb,
        "--classes",
        "0,3,7",
        "--out",
        out_dir.to_str().unwrap(),
        "--tsne-iterations",
        "300",
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    check_png(&out_dir.join("similarity.png"), 900, 600);
    check_png(&out_dir.join("tsne.png"), 1100, 800);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    let isotropy = summary["isotropy"].as_f64().unwrap();
    assert!(isotropy > 0.0 && isotropy <= 1.0, "{summary}");
    let positive = summary["mean_positive_similarity"].as_f64().unwrap();
    let negative = summary["mean_negative_similarity"].as_f64().unwrap();
    assert!(positive > negative, "{summary}");
    assert_eq!(summary["chosen"]["class_names"][1], "class_3");
    // 3 classes of 40: 3 · 40·39/2 positive pairs, 3 · 40² negative pairs.
    assert_eq!(summary["chosen"]["positive_pairs"], 2340);
    assert_eq!(summary["chosen"]["negative_pairs"], 4800);
}

#[test]
fn analyze_rejects_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let emb = write_clusters(tmp.path());
    let out_dir = tmp.path().join("a");
    let out = out_dir.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["analyze", "--out", out];
        args.extend_from_slice(extra);
        cli(&args)
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--embeddings", "/nonexistent.safetensors"],
            "nonexistent",
        ),
        (
            vec!["--embeddings", &emb, "--classes", "0,8"],
            "class 8 does not exist",
        ),
        (
            vec!["--embeddings", &emb, "--classes", "2,2"],
            "listed twice",
        ),
        (
            vec!["--embeddings", &emb, "--classes", "a,b"],
            "invalid digit",
        ),
    ];
    for (args, message) in cases {
        let o = run(&args);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
    }

    // A safetensors file with other tensor names, and one with mismatched lengths.
    use safetensors::tensor::{Dtype, TensorView};
    let floats: Vec<u8> = [0f32; 6].iter().flat_map(|v| v.to_le_bytes()).collect();
    let longs: Vec<u8> = [0i64; 2].iter().flat_map(|v| v.to_le_bytes()).collect();
    let wrong_names = tmp.path().join("names.safetensors");
    let tensors = [
        (
            "features",
            TensorView::new(Dtype::F32, vec![3, 2], &floats).unwrap(),
        ),
        (
            "targets",
            TensorView::new(Dtype::I64, vec![2], &longs).unwrap(),
        ),
    ];
    std::fs::write(&wrong_names, safetensors::serialize(tensors, None).unwrap()).unwrap();
    let o = run(&["--embeddings", wrong_names.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no tensor named \"embeddings\""),
        "{}",
        stderr(&o)
    );

    let mismatched = tmp.path().join("lengths.safetensors");
    let tensors = [
        (
            "embeddings",
            TensorView::new(Dtype::F32, vec![3, 2], &floats).unwrap(),
        ),
        (
            "labels",
            TensorView::new(Dtype::I64, vec![2], &longs).unwrap(),
        ),
    ];
    std::fs::write(&mismatched, safetensors::serialize(tensors, None).unwrap()).unwrap();
    let o = run(&["--embeddings", mismatched.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("one label per embedding"),
        "{}",
        stderr(&o)
    );
}

/// The metrics.jsonl of a 5-epoch run of 20 steps per epoch, with or without few-shot values.
fn metrics_file(fewshot: bool) -> String {
    let mut lines = Vec::new();
    for epoch in 1..=5 {
        for s in 1..=20 {
            let step = (epoch - 1) * 20 + s;
            lines.push(Record::Step(StepRecord {
                epoch,
                step,
                loss: 4.0 * (-(step as f64) / 40.0).exp() + 0.3,
                lr: 1e-3 * (step as f64 / 100.0 * std::f64::consts::PI).cos().max(0.01),
                grad_norm: 1.0,
                images_per_s: 100.0,
                loss_scale: None,
                skipped_steps: None,
            }));
        }
        let top1 = 0.5 + 0.08 * epoch as f64;
        let few = |base: f64| fewshot.then_some(base + 0.05 * epoch as f64);
        lines.push(Record::Epoch(EpochRecord {
            epoch,
            step: epoch * 20,
            loss: 1.0,
            lr: 0.001,
            train_top1: top1,
            test_top1: top1,
            test_top5: (top1 + 0.3).min(1.0),
            best: true,
            seconds: 1.0,
            images_per_s: 100.0,
            peak_mem_bytes: 1 << 30,
            fewshot_val_1shot: few(0.3),
            fewshot_val_1shot_ci95: fewshot.then_some(0.02),
            fewshot_val_5shot: few(0.5),
            fewshot_val_5shot_ci95: fewshot.then_some(0.01),
        }));
    }
    lines.iter().map(|r| r.to_json() + "\n").collect()
}

#[test]
fn plot_draws_the_curves_of_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    std::fs::write(run_dir.join("metrics.jsonl"), metrics_file(true)).unwrap();
    let out = cli(&["plot", run_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    for name in ["loss.png", "accuracy.png", "lr.png", "fewshot.png"] {
        check_png(&run_dir.join(name), 900, 600);
    }

    // A run without --fewshot-eval gets no few-shot chart.
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("metrics.jsonl"), metrics_file(false)).unwrap();
    let out = cli(&["plot", plain.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    check_png(&plain.join("accuracy.png"), 900, 600);
    assert!(!plain.join("fewshot.png").exists());

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = cli(&["plot", empty.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("metrics.jsonl not found"),
        "{}",
        stderr(&o)
    );
    // Lines that are not metrics records are named.
    std::fs::write(empty.join("metrics.jsonl"), "loss=3\n").unwrap();
    let o = cli(&["plot", empty.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("line 1"), "{}", stderr(&o));
}

#[test]
fn embed_then_fewshot_matches_fewshot_on_the_model() {
    // The tiny BEiT of the fixtures (random weights, 32-pixel input) on the synthetic set.
    let tmp = tempfile::tempdir().unwrap();
    let weights = clce_engine::fixtures::dir().join("models/beit_timm_tiny.safetensors");
    let weights = weights.to_str().unwrap();
    let data = "synthetic:classes=6,train=1,test=20";
    let emb = tmp.path().join("tiny.safetensors");
    let out = cli(&[
        "embed",
        "--model",
        "beit",
        "--weights",
        weights,
        "--data",
        data,
        "--output",
        emb.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let embeddings = Embeddings::load(&emb).unwrap();
    assert_eq!((embeddings.len(), embeddings.dim), (120, 64));
    assert_eq!(embeddings.class_names.len(), 6);

    let run = |source: &[&str], json: &Path| {
        let mut args = vec![
            "fewshot",
            "--episodes",
            "20",
            "--json",
            json.to_str().unwrap(),
        ];
        args.extend_from_slice(source);
        let out = cli(&args);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        let text = std::fs::read_to_string(json).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["results"].clone()
    };
    let from_file = run(
        &["--embeddings", emb.to_str().unwrap()],
        &tmp.path().join("a.json"),
    );
    let from_model = run(
        &["--model", "beit", "--weights", weights, "--data", data],
        &tmp.path().join("b.json"),
    );
    assert_eq!(from_file, from_model);

    let missing = cli(&[
        "embed",
        "--weights",
        "/nonexistent.safetensors",
        "--data",
        data,
        "--output",
        emb.to_str().unwrap(),
    ]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("/nonexistent.safetensors"),
        "{}",
        stderr(&missing)
    );
    let no_data = cli(&[
        "embed",
        "--weights",
        weights,
        "--output",
        emb.to_str().unwrap(),
    ]);
    assert!(!no_data.status.success());
    assert!(
        stderr(&no_data).contains("--data is required"),
        "{}",
        stderr(&no_data)
    );
}
