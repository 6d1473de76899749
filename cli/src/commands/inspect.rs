//! `clce-cli inspect FILE`: what a checkpoint holds, from its header alone (no weights are
//! read, so it is instant even for large files).
use std::path::PathBuf;
use std::process::ExitCode;

use clce_models::checkpoint::{self, FileDType};
use clce_models::config::{self, Architecture, ModelConfig, PRESETS};

use super::CmdResult;

#[derive(clap::Args)]
pub struct Args {
    /// A safetensors checkpoint (timm, torchvision, transformers or clce).
    file: PathBuf,
    /// Print only the summary, not every tensor.
    #[arg(long)]
    summary: bool,
}

pub fn run(args: Args) -> CmdResult {
    let header = checkpoint::read_header(&args.file)?;
    let bytes = std::fs::metadata(&args.file)?.len();
    println!(
        "{}: {} tensors, {:.1} MB",
        args.file.display(),
        header.tensors.len(),
        bytes as f64 / 1e6
    );
    let mut dtypes: Vec<(FileDType, usize)> = Vec::new();
    for (dtype, _) in header.tensors.values() {
        match dtypes.iter_mut().find(|(d, _)| d == dtype) {
            Some((_, n)) => *n += 1,
            None => dtypes.push((*dtype, 1)),
        }
    }
    let dtypes: Vec<String> = dtypes.iter().map(|(d, n)| format!("{d} x{n}")).collect();
    println!("dtypes: {}", dtypes.join(", "));
    for (key, value) in &header.metadata {
        println!("metadata {key}: {}", shorten(value, 160));
    }

    let mut tensors = header.tensors.clone();
    match checkpoint::to_timm_names(header.tensors.clone()) {
        Err(e) => println!("architecture: unknown ({e})"),
        Ok(renamed) => {
            println!(
                "architecture: {} in {} naming",
                renamed.arch, renamed.naming
            );
            let shapes = renamed
                .tensors
                .iter()
                .map(|(n, (_, s))| (n.clone(), s.clone()))
                .collect();
            match config::infer(renamed.arch, &shapes) {
                Ok(inferred) => {
                    println!("config: {}", describe(&inferred.arch));
                    let classes = inferred
                        .num_classes
                        .map_or("no classifier head".to_string(), |n| format!("{n} classes"));
                    let proj = inferred
                        .proj_dim
                        .map_or("none".to_string(), |n| format!("to {n}"));
                    println!("classifier: {classes}; projection head: {proj}");
                    if let Some(preset) = matching_preset(&inferred.arch) {
                        println!("preset: {preset}");
                    }
                }
                Err(e) => println!("config: cannot infer ({e})"),
            }
            let is_param = |name: &str, dtype: &FileDType| {
                dtype.is_float()
                    && !name.ends_with("running_mean")
                    && !name.ends_with("running_var")
            };
            let count = |proj: bool| -> usize {
                renamed
                    .tensors
                    .iter()
                    .filter(|(n, (d, _))| is_param(n, d) && n.starts_with("proj.") == proj)
                    .map(|(_, (_, s))| s.iter().product::<usize>())
                    .sum()
            };
            println!(
                "parameters: {} (not counting BatchNorm statistics, counters, index tables{})",
                thousands(count(false)),
                match count(true) {
                    0 => String::new(),
                    n => format!(" and the {} of the projection head", thousands(n)),
                }
            );
            tensors = header.tensors;
        }
    }
    if !args.summary {
        let width = tensors.keys().map(String::len).max().unwrap_or(0);
        for (name, (dtype, shape)) in &tensors {
            println!("  {name:<width$}  {dtype:<4}  {shape:?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(arch: &Architecture) -> String {
    match arch {
        Architecture::Beit(c) => format!(
            "BEiT, image {}, patch {}, width {}, depth {}, heads {}, MLP {}, layer scale {}",
            c.image_size,
            c.patch_size,
            c.width,
            c.depth,
            c.heads,
            c.mlp_hidden,
            if c.layer_scale.is_some() { "yes" } else { "no" }
        ),
        Architecture::ResNet(c) => format!(
            "ResNet, stem {}, blocks {:?}, widths {:?}, {} features",
            c.stem_width,
            c.layers,
            c.widths,
            c.feature_dim()
        ),
    }
}

fn matching_preset(arch: &Architecture) -> Option<&'static str> {
    PRESETS
        .iter()
        .copied()
        .find(|p| ModelConfig::preset(p).is_ok_and(|c| &c.arch == arch))
}

fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}... ({} chars)", &s[..cut], s.chars().count()),
        None => s.to_string(),
    }
}

pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
