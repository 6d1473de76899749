//! `clce-cli analyze`: the embedding analysis of the paper's section 4.6 on a file written by
//! `embed`: the isotropy score, the cosine-similarity distributions of positive and negative
//! pairs (PNG), a t-SNE map (PNG) and `summary.json`.
use std::path::PathBuf;
use std::process::ExitCode;

use clce_cli::eval::isotropy::isotropy;
use clce_cli::eval::plot::{overlaid_histograms, scatter_by_class, Distribution, Point};
use clce_cli::eval::similarity::{mean_similarities, pair_similarities};
use clce_cli::eval::tsne::Tsne;
use clce_cli::eval::Embeddings;
use serde_json::json;

use super::CmdResult;

/// The t-SNE figure's palette has 20 colours, as the paper's figure has 20 classes at most.
const MAX_CLASSES: usize = 20;

#[derive(clap::Args)]
pub struct Args {
    /// Embeddings file written by `clce-cli embed`.
    #[arg(long)]
    embeddings: PathBuf,
    /// Classes (label numbers) of the similarity histograms and the t-SNE map, at most 20;
    /// default: the first 20 (or all, when there are fewer).
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<usize>>,
    /// Embeddings per chosen class used for the pairs and the map (the first ones in the file).
    #[arg(long, default_value_t = 100)]
    per_class: usize,
    /// Output folder (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// t-SNE perplexity (lowered to (points - 1) / 3 for small sets).
    #[arg(long, allow_negative_numbers = true, default_value_t = 30.0)]
    perplexity: f64,
    /// t-SNE gradient steps (the first 250 with early exaggeration).
    #[arg(long, default_value_t = 1000)]
    tsne_iterations: usize,
    /// Seed of the t-SNE start.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: Args) -> CmdResult {
    if !(args.perplexity.is_finite() && args.perplexity > 0.0) {
        return Err(format!(
            "--perplexity {} must be a number above 0 (typically 5 to 50)",
            args.perplexity
        )
        .into());
    }
    if args.tsne_iterations == 0 {
        return Err("--tsne-iterations must be at least 1 (the map starts random)".into());
    }
    let embeddings = Embeddings::load(&args.embeddings)?;
    check_values(&embeddings, &args.embeddings)?;
    let classes = match &args.classes {
        Some(c) => c.clone(),
        None => (0..embeddings.num_classes().min(MAX_CLASSES)).collect(),
    };
    check_classes(&classes, &embeddings)?;
    if args.per_class == 0 {
        return Err("--per-class must be at least 1".into());
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let names: Vec<String> = classes
        .iter()
        .map(|&c| embeddings.class_names[c].clone())
        .collect();

    let score = isotropy(&embeddings)?;
    let means = mean_similarities(&embeddings)?;
    println!(
        "{}: {} embeddings of dimension {}, {} classes",
        args.embeddings.display(),
        embeddings.len(),
        embeddings.dim,
        embeddings.num_classes()
    );
    println!("isotropy score        {score:.6}");
    println!("mean cosine, positive {:.4}", means.positive);
    println!("mean cosine, negative {:.4}", means.negative);

    let pairs = pair_similarities(&embeddings, &classes, args.per_class)?;
    if pairs.positive.is_empty() || pairs.negative.is_empty() {
        return Err(format!(
            "the chosen classes {classes:?} give no {} pairs: choose at least two classes with \
             at least two embeddings each",
            if pairs.positive.is_empty() {
                "positive"
            } else {
                "negative"
            }
        )
        .into());
    }
    let histogram = args.out.join("similarity.png");
    overlaid_histograms(
        &histogram,
        &format!("Cosine similarity, {} classes", classes.len()),
        "cosine similarity",
        &[
            Distribution {
                label: "positive pairs (same class)",
                values: &pairs.positive,
            },
            Distribution {
                label: "negative pairs (different classes)",
                values: &pairs.negative,
            },
        ],
        80,
        (-1.0, 1.0),
    )?;
    println!("wrote {}", histogram.display());

    let tsne_path = args.out.join("tsne.png");
    let (values, labels) = tsne_points(&embeddings, &classes, args.per_class);
    // t-SNE needs perplexity < n; small sets get a proportionally smaller neighbourhood.
    let perplexity = args.perplexity.min((labels.len() - 1) as f64 / 3.0);
    let tsne = Tsne {
        perplexity,
        iterations: args.tsne_iterations,
        seed: args.seed,
    };
    eprintln!(
        "t-SNE of {} points, perplexity {perplexity:.1} ...",
        labels.len()
    );
    let map = tsne.embed(&values, embeddings.dim)?;
    let scatter: Vec<Point> = map
        .iter()
        .zip(&labels)
        .map(|(p, &class)| Point {
            x: p[0],
            y: p[1],
            class,
        })
        .collect();
    scatter_by_class(
        &tsne_path,
        &format!("t-SNE of {} embeddings", labels.len()),
        ("t-SNE 1", "t-SNE 2"),
        &scatter,
        &names,
    )?;
    println!("wrote {}", tsne_path.display());

    let chosen_mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
    let summary = json!({
        "embeddings": args.embeddings.display().to_string(),
        "count": embeddings.len(),
        "dim": embeddings.dim,
        "classes": embeddings.num_classes(),
        "isotropy": score,
        "mean_positive_similarity": means.positive,
        "mean_negative_similarity": means.negative,
        "chosen": {
            "classes": classes,
            "class_names": names,
            "per_class": args.per_class,
            "positive_pairs": pairs.positive.len(),
            "negative_pairs": pairs.negative.len(),
            "mean_positive_similarity": chosen_mean(&pairs.positive),
            "mean_negative_similarity": chosen_mean(&pairs.negative),
        },
        "tsne": { "perplexity": perplexity, "iterations": args.tsne_iterations, "seed": args.seed },
        "figures": { "similarity": "similarity.png", "tsne": "tsne.png" },
    });
    let summary_path = args.out.join("summary.json");
    std::fs::write(
        &summary_path,
        serde_json::to_string_pretty(&summary)? + "\n",
    )
    .map_err(|e| format!("cannot write {}: {e}", summary_path.display()))?;
    println!("wrote {}", summary_path.display());
    Ok(ExitCode::SUCCESS)
}

/// Refuses embeddings that no cosine similarity can be computed from: none at all or only
/// zero vectors (`Embeddings::load` already refuses NaN and infinite values); warns when some
/// are zero.
fn check_values(embeddings: &Embeddings, path: &std::path::Path) -> Result<(), String> {
    let file = path.display();
    if embeddings.len() == 0 || embeddings.dim == 0 {
        return Err(format!(
            "{file} holds no embeddings ({} of dimension {}); write them with `clce-cli embed`",
            embeddings.len(),
            embeddings.dim
        ));
    }
    let zero = embeddings
        .values
        .chunks(embeddings.dim)
        .filter(|row| row.iter().all(|&v| v == 0.0))
        .count();
    if zero == embeddings.len() {
        return Err(format!(
            "{file}: all {zero} embeddings are zero vectors, whose cosine similarity is \
             undefined; the features collapsed (a dead ReLU layer or an untrained model?)"
        ));
    }
    if zero > 0 {
        eprintln!(
            "warning: {zero} of {} embeddings are zero vectors; their cosine similarities \
             count as 0",
            embeddings.len()
        );
    }
    Ok(())
}

fn check_classes(classes: &[usize], embeddings: &Embeddings) -> Result<(), String> {
    let count = embeddings.num_classes();
    if classes.is_empty() || classes.len() > MAX_CLASSES {
        return Err(format!(
            "--classes: give 1 to {MAX_CLASSES} classes, got {}",
            classes.len()
        ));
    }
    if let Some(bad) = classes.iter().find(|&&c| c >= count) {
        return Err(format!(
            "--classes: class {bad} does not exist; the embeddings have classes 0..{}",
            count.saturating_sub(1)
        ));
    }
    for (i, c) in classes.iter().enumerate() {
        if classes[..i].contains(c) {
            return Err(format!("--classes: class {c} is listed twice"));
        }
    }
    Ok(())
}

/// The first `per_class` embeddings of every chosen class, as rows, with the position of
/// their class in `classes` (the colour in the map).
fn tsne_points(
    embeddings: &Embeddings,
    classes: &[usize],
    per_class: usize,
) -> (Vec<f32>, Vec<usize>) {
    let by_class = embeddings.indices_by_class();
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for (k, &c) in classes.iter().enumerate() {
        for &i in by_class[c].iter().take(per_class) {
            rows.extend_from_slice(embeddings.row(i));
            labels.push(k);
        }
    }
    (rows, labels)
}
