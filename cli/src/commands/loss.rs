//! `clce-cli loss`: evaluates one objective and its gradients on a batch saved from PyTorch,
//! so the engine's numbers can be compared with any other implementation's.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clce_engine::loss::{objective, LossConfig, LossKind};
use clce_engine::{Device, Tensor};
use safetensors::{Dtype, SafeTensors};

use super::CmdResult;
use crate::device_arg::DeviceArg;

#[derive(clap::Args)]
#[command(after_help = "\
Losses (METHOD.md): clce = (1-λ)·CE + λ·LACLN; clce-nohnm the same with every hard-negative \
weight w_ik = 1; lacln, lacln-nohnm alone; ce (features unused); supcon (Khosla et al., with \
factor 1 instead of τ/base_τ); ce+supcon = (1-λ)·CE + λ·SupCon; hscl (Jiang et al.). \
Gradients are of the mean loss with respect to the raw (unnormalised) features and the logits.")]
pub struct Args {
    /// safetensors file with `features` [M, D] F32, `labels` [M] I64 or I32, and `logits`
    /// [M, C] F32 for the losses with a cross-entropy term.
    #[arg(long)]
    input: PathBuf,
    /// clce, clce-nohnm, lacln, lacln-nohnm, ce, supcon, ce+supcon or hscl.
    #[arg(long, default_value = "clce")]
    loss: String,
    /// Temperature τ of the similarities z_i·z_j/τ.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.5)]
    tau: f64,
    /// Hardness β of the negative weights (lacln, clce, hscl).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    beta: f64,
    /// Weight λ of the contrastive term in the combined losses.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.9)]
    lambda: f64,
    /// Label smoothing of the cross-entropy term.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    label_smoothing: f64,
    #[command(flatten)]
    device: DeviceArg,
    /// Writes `loss` [1], `grad_features` [M, D] (unless the loss is ce) and, where CE is
    /// involved, `grad_logits` [M, C], all F32, to this safetensors file.
    #[arg(long)]
    output: Option<PathBuf>,
}

pub fn run(args: Args) -> CmdResult {
    let kind: LossKind = args.loss.parse()?;
    let cfg = LossConfig {
        tau: args.tau,
        beta: args.beta,
        lambda: args.lambda,
        label_smoothing: args.label_smoothing,
    };
    if let Some(out) = &args.output {
        if same_file(out, &args.input) {
            return Err(format!(
                "--output {} is the input file: writing it would destroy the input; name \
                 another file",
                out.display()
            )
            .into());
        }
    }
    let device = args.device.resolve()?;
    let bytes = std::fs::read(&args.input)
        .map_err(|e| format!("cannot read {}: {e}", args.input.display()))?;
    let batch = Batch::read(&args.input, &bytes, kind, &device)?;

    let loss = objective(
        kind,
        &cfg,
        &batch.features,
        &batch.labels,
        batch.logits.as_ref(),
    )?;
    let value = loss.to_scalar()?;
    if !value.is_finite() {
        return Err(format!(
            "the {kind} loss is {value}: {}",
            non_finite_cause(&batch, &cfg)?
        )
        .into());
    }
    loss.backward()?;
    println!(
        "{kind} loss = {value:.10}  (M = {}, tau = {}, beta = {}, lambda = {}, label smoothing = {}, {device})",
        batch.labels.len(),
        cfg.tau,
        cfg.beta,
        cfg.lambda,
        cfg.label_smoothing
    );

    if let Some(out) = &args.output {
        let mut tensors = vec![("loss".to_string(), vec![1], vec![value as f32])];
        let mut grads = Vec::new();
        if kind.uses_features() {
            grads.push(("grad_features", &batch.features));
        }
        if let Some(logits) = batch.logits.as_ref().filter(|_| kind.needs_logits()) {
            grads.push(("grad_logits", logits));
        }
        for (name, t) in grads {
            let g = t
                .grad()
                .ok_or_else(|| format!("{name}: no gradient was computed"))?;
            tensors.push((name.to_string(), t.dims().to_vec(), g.to_vec_f32()?));
        }
        write_f32(out, &tensors)?;
        println!("wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `a` and `b` name one file (an existing `a` compared by identity, so that
/// `./x` and `x` match too).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Why a loss came out NaN or infinite: non-finite inputs, or settings that overflow.
fn non_finite_cause(batch: &Batch, cfg: &LossConfig) -> Result<String, String> {
    let count = |t: &Tensor| -> Result<usize, String> {
        Ok(t.to_vec_f32()
            .map_err(|e| e.to_string())?
            .iter()
            .filter(|v| !v.is_finite())
            .count())
    };
    let mut found = Vec::new();
    for (name, t) in [
        ("features", Some(&batch.features)),
        ("logits", batch.logits.as_ref()),
    ] {
        if let Some(t) = t {
            let n = count(t)?;
            if n > 0 {
                found.push(format!("{name} holds {n} NaN or infinite values"));
            }
        }
    }
    Ok(if found.is_empty() {
        format!(
            "the inputs are finite, so the settings overflow (tau = {}, beta = {}); try a \
             larger --tau or a smaller --beta",
            cfg.tau, cfg.beta
        )
    } else {
        found.join(", ") + "; fix the input file"
    })
}

/// The inputs of one batch, checked and on the device.
struct Batch {
    features: Tensor,
    labels: Vec<usize>,
    logits: Option<Tensor>,
}

impl Batch {
    fn read(path: &Path, bytes: &[u8], kind: LossKind, device: &Device) -> Result<Batch, String> {
        let file = path.display();
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| format!("{file} is not a readable safetensors file ({e})"))?;
        let get = |name: &str| {
            st.tensor(name).map_err(|_| {
                let mut found = st.names();
                found.sort();
                format!(
                    "{file} has no tensor `{name}` (it has: {})",
                    found.join(", ")
                )
            })
        };

        let features = get("features")?;
        let [m, d] = matrix_shape("features", features.shape())?;
        let features = f32_values("features", &features)?;

        let labels = get("labels")?;
        if labels.shape() != [m] {
            return Err(format!(
                "`labels` must have shape [{m}] (one per feature row), got {:?}",
                labels.shape()
            ));
        }
        let labels = label_values(&labels)?;

        let logits = if kind.needs_logits() {
            let view = get("logits").map_err(|e| format!("{e}; `{kind}` needs logits [M, C]"))?;
            let [rows, c] = matrix_shape("logits", view.shape())?;
            if rows != m {
                return Err(format!("`logits` has {rows} rows but `features` has {m}"));
            }
            if let Some((i, &y)) = labels.iter().enumerate().find(|&(_, &y)| y >= c) {
                return Err(format!(
                    "labels[{i}] = {y} is not a class of `logits` [{rows}, {c}]"
                ));
            }
            Some(leaf(f32_values("logits", &view)?, [rows, c], device)?)
        } else {
            None
        };
        Ok(Batch {
            features: leaf(features, [m, d], device)?,
            labels,
            logits,
        })
    }
}

fn matrix_shape(name: &str, shape: &[usize]) -> Result<[usize; 2], String> {
    match *shape {
        [rows, cols] if rows > 0 && cols > 0 => Ok([rows, cols]),
        _ => Err(format!(
            "`{name}` must be a non-empty matrix [M, _], got shape {shape:?}"
        )),
    }
}

fn f32_values(name: &str, view: &safetensors::tensor::TensorView) -> Result<Vec<f32>, String> {
    if view.dtype() != Dtype::F32 {
        return Err(format!(
            "`{name}` must be F32, got {:?} (in PyTorch: .float())",
            view.dtype()
        ));
    }
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect())
}

fn label_values(view: &safetensors::tensor::TensorView) -> Result<Vec<usize>, String> {
    let raw: Vec<i64> = match view.dtype() {
        Dtype::I64 => view
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        Dtype::I32 => view
            .data()
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64)
            .collect(),
        other => return Err(format!("`labels` must be I64 or I32, got {other:?}")),
    };
    raw.iter()
        .enumerate()
        .map(|(i, &y)| {
            usize::try_from(y).map_err(|_| format!("labels must be >= 0, but labels[{i}] = {y}"))
        })
        .collect()
}

/// A tensor that records gradients.
fn leaf(values: Vec<f32>, shape: [usize; 2], device: &Device) -> Result<Tensor, String> {
    Ok(Tensor::from_vec(values, shape, device)
        .map_err(|e| e.to_string())?
        .set_requires_grad(true))
}

fn write_f32(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<(), String> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let data = safetensors::serialize(views, None::<HashMap<String, String>>)
        .map_err(|e| e.to_string())?;
    std::fs::write(path, data).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_must_be_non_negative_integers() {
        let bytes: Vec<u8> = [3i64, -1].iter().flat_map(|x| x.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(Dtype::I64, vec![2], &bytes).unwrap();
        let err = label_values(&view).unwrap_err();
        assert!(err.contains("labels[1] = -1"), "{err}");
        let f = [0f32; 2]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<_>>();
        let view = safetensors::tensor::TensorView::new(Dtype::F32, vec![2], &f).unwrap();
        assert!(label_values(&view).unwrap_err().contains("I64 or I32"));
    }
}
