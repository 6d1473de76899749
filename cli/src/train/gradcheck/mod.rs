//! Gradient-checked fine-tuning: before the first step, the analytic gradient of the whole
//! objective (model + heads + loss, on a slice of the first batch) is compared with central
//! finite differences for a sample of coordinates of every layer type, on the device that
//! will train. A wrong backward rule anywhere (a kernel, a layer, the loss) shows up here
//! before hours of training are spent on it.
//!
//! What is compared. Parameters whose names differ only in block indices form one layer type
//! (`layer3.5.conv2.weight` and `layer1.0.conv2.weight` are both `conv2.weight`). Of each
//! type, the first and the last tensor are checked; of each tensor, the coordinate with the
//! largest analytic gradient and random others.
//!
//! The step. The model runs in f32, so each loss value L carries rounding noise of a few
//! units in its last place (ulp = 2^-23 |L|). A central difference (L+ - L-) / 2h therefore
//! knows the derivative only to within `2 * NOISE_ULPS * ulp / 2h` (its resolution), and it is
//! biased by the loss's curvature over the step (h^2 |L'''| / 6 for a smooth loss; more where
//! the step carries ReLU or max-pool inputs across their kinks). h = 1e-2 * max(1, |x|)
//! balances the two for f32: the optimum (3 noise / |L'''|)^(1/3) is near 1e-2 for losses of
//! order 1. The losses are read as f64, subtracted in f64, and divided by the step actually
//! taken in f32 (x + h rounds).
//!
//! A second step. Where the quotient disagrees with the analytic gradient, it is computed
//! again with a ten times smaller step: less biased by curvature and kinks, ten times less
//! resolved. The coordinate's error is the part of |analytic - numeric| beyond the resolution,
//! for whichever step agrees better: curvature and kinks shrink with the step, a wrong
//! backward rule does not.
//!
//! The verdict. A tensor's error is the largest coordinate error divided by the tensor's
//! largest gradient (tiny gradients are held to the tensor's scale, not their own). A
//! coordinate whose gradients both lie within the resolution cannot be checked in f32 and is
//! counted as unresolved (random-init models have many: their small heads pass little
//! gradient back). The tolerance, 0.1: on correct code the error stayed below 3e-2 in 32 runs
//! of the tiny ResNet and BEiT from random initialisations (ReLU-dense random ResNets are the
//! worst case), while a wrong rule (a missing term, a wrong scale or transpose) errs by 0.3
//! or more at the largest gradient. Finer errors than that are the business of the op-level
//! checks in f64 (`clce-cli gradcheck`).
use std::collections::BTreeMap;

use clce_engine::{no_grad, Tensor};
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod report;

pub use report::{Report, Row};

use super::error::{Result, TrainError};

/// Largest accepted error beyond f32 resolution (see the module documentation).
pub const DEFAULT_TOLERANCE: f64 = 1e-1;

/// Finite-difference step relative to max(1, |x|).
const REL_STEP: f64 = 1e-2;

/// Rounding noise of one f32 loss evaluation, in units of the last place of the loss (1 to 2
/// measured on the tiny models; 4 leaves a margin).
const NOISE_ULPS: f64 = 4.0;

#[derive(Clone, Copy, Debug)]
pub struct GradcheckOptions {
    /// Coordinates checked per tensor: the largest-gradient one, then random ones.
    pub coords_per_tensor: usize,
    /// Tensors checked per layer type, spread from the first to the last.
    pub tensors_per_type: usize,
    pub tolerance: f64,
    /// Seed of the random choice of coordinates.
    pub seed: u64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            coords_per_tensor: 2,
            tensors_per_type: 2,
            tolerance: DEFAULT_TOLERANCE,
            seed: 0,
        }
    }
}

/// The layer type of a parameter: its name without the index of a repeated block, i.e.
/// without a leading `container.N.` (`blocks.3.attn.qkv.weight` -> `attn.qkv.weight`,
/// `blocks.3.gamma_1` -> `gamma_1`, `layer1.0.downsample.0.weight` -> `downsample.0.weight`),
/// unless only `weight` or `bias` follows: then `container.N` is a layer of a sequence
/// (`proj.0.weight`) and is the type itself.
pub fn layer_type(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    let is_block_index = parts.len() >= 3 && parts[1].parse::<usize>().is_ok();
    let layer_of_sequence = parts.len() == 3 && matches!(parts[2], "weight" | "bias");
    if is_block_index && !layer_of_sequence {
        parts[2..].join(".")
    } else {
        name.to_string()
    }
}

/// Checks the gradient of `loss` with respect to `params`. `loss` must compute the same
/// function on every call (eval mode: no dropout or drop path, BatchNorm on its running
/// statistics). `progress(done, total)` is called after each coordinate. Leaves every
/// parameter exactly as it found it, with no gradient.
pub fn check(
    params: &[(String, Tensor)],
    loss: &dyn Fn() -> Result<Tensor>,
    opts: &GradcheckOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report> {
    for (_, p) in params {
        p.zero_grad();
    }
    let l0 = loss()?;
    let loss_value = l0.to_scalar()?;
    if !loss_value.is_finite() {
        return Err(TrainError::NonFinite {
            what: "loss of the gradient check",
            value: loss_value,
            step: 0,
            epoch: 1,
        });
    }
    l0.backward()?;
    drop(l0);

    let plan = plan(params, opts);
    let total: usize = plan
        .iter()
        .flat_map(|(_, tensors)| tensors)
        .map(|&i| opts.coords_per_tensor.min(params[i].1.numel()))
        .sum();
    let mut done = 0;
    let mut rows = Vec::new();
    for (layer_type, tensors) in plan {
        let mut row = Row {
            layer_type,
            tensors: Vec::new(),
            coords: 0,
            unresolved: 0,
            max_rel_error: 0.0,
            max_unexplained: 0.0,
        };
        for i in tensors {
            let (name, p) = &params[i];
            let t = check_tensor(name, p, loss, opts, &mut |n| progress(done + n, total))?;
            done += t.coords;
            row.tensors.push(name.clone());
            row.coords += t.coords;
            row.unresolved += t.unresolved;
            row.max_rel_error = nan_max(row.max_rel_error, t.raw_error);
            row.max_unexplained = nan_max(row.max_unexplained, t.error);
        }
        rows.push(row);
    }
    for (_, p) in params {
        p.zero_grad();
    }
    Ok(Report {
        rows,
        tolerance: opts.tolerance,
        loss: loss_value,
    })
}

/// Which tensors to check, by layer type in order of first appearance: indices into
/// `params`, spread evenly from the type's first tensor to its last.
fn plan(params: &[(String, Tensor)], opts: &GradcheckOptions) -> Vec<(String, Vec<usize>)> {
    let mut order: Vec<String> = Vec::new();
    let mut by_type: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (name, p)) in params.iter().enumerate() {
        if p.numel() == 0 {
            continue;
        }
        let t = layer_type(name);
        if !by_type.contains_key(&t) {
            order.push(t.clone());
        }
        by_type.entry(t).or_default().push(i);
    }
    let k = opts.tensors_per_type.max(1);
    order
        .into_iter()
        .map(|t| {
            let all = by_type.remove(&t).unwrap_or_default();
            let picked: Vec<usize> = if all.len() <= k {
                all
            } else if k == 1 {
                vec![all[0]]
            } else {
                let mut p: Vec<usize> =
                    (0..k).map(|j| all[j * (all.len() - 1) / (k - 1)]).collect();
                p.dedup();
                p
            };
            (t, picked)
        })
        .collect()
}

/// One tensor's result.
struct TensorCheck {
    /// Largest |analytic - numeric| beyond the resolution, relative to the largest gradient.
    error: f64,
    /// Largest |analytic - numeric| relative to the largest gradient (shown in the table).
    raw_error: f64,
    coords: usize,
    unresolved: usize,
}

/// Checks a few coordinates of one tensor.
fn check_tensor(
    name: &str,
    p: &Tensor,
    loss: &dyn Fn() -> Result<Tensor>,
    opts: &GradcheckOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<TensorCheck> {
    let original = p.to_vec_f32()?;
    let analytic = match p.grad() {
        Some(g) => g.to_vec_f32()?,
        None => vec![0.0; original.len()],
    };
    let coords = coordinates(name, &analytic, opts);
    // The first coordinate has the tensor's largest gradient: it sets the scale.
    let allowed = opts.tolerance * analytic[coords[0]].abs() as f64;

    let _no_grad = no_grad();
    let (mut unexplained, mut raw, mut largest): (f64, f64, f64) = (0.0, 0.0, 0.0);
    let mut unresolved = 0;
    let mut result = Ok(());
    for (n, &c) in coords.iter().enumerate() {
        let loss_at = |value: f32| -> Result<f64> {
            let mut values = original.clone();
            values[c] = value;
            p.assign(&Tensor::from_vec(values, p.dims().to_vec(), p.device())?)?;
            Ok(loss()?.to_scalar()?)
        };
        let a = analytic[c] as f64;
        let q = match compare(&loss_at, original[c], a, allowed) {
            Ok(q) => q,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let gradient = a.abs().max(q.numeric.abs());
        if gradient <= q.resolution {
            unresolved += 1;
        } else {
            // (A NaN on either side lands here and fails the check.)
            unexplained = nan_max(unexplained, q.unexplained);
            raw = nan_max(raw, (a - q.numeric).abs());
            largest = nan_max(largest, gradient);
        }
        progress(n + 1);
    }
    // Restore the exact original values whatever happened.
    p.assign(&Tensor::from_vec(original, p.dims().to_vec(), p.device())?)?;
    result?;
    let resolved = coords.len() - unresolved;
    let relative = |x: f64| if resolved == 0 { 0.0 } else { x / largest };
    Ok(TensorCheck {
        error: relative(unexplained),
        raw_error: relative(raw),
        coords: coords.len(),
        unresolved,
    })
}

/// How the analytic gradient `a` of one coordinate compares with difference quotients.
struct Comparison {
    /// The quotient with the standard step and its resolution.
    numeric: f64,
    resolution: f64,
    /// |a - quotient| beyond the quotient's resolution, for the step that agrees best.
    unexplained: f64,
}

/// Compares `a` with the central difference quotient of `loss_at` at `x` with the standard
/// step, and, if they disagree by more than `allowed`, with a ten times smaller step too.
fn compare(
    loss_at: &dyn Fn(f32) -> Result<f64>,
    x: f32,
    a: f64,
    allowed: f64,
) -> Result<Comparison> {
    let h = REL_STEP * (x as f64).abs().max(1.0);
    let (numeric, resolution) = difference_quotient(loss_at, x, h)?;
    let mut unexplained = (a - numeric).abs() - resolution;
    if unexplained > allowed {
        let (finer, finer_resolution) = difference_quotient(loss_at, x, h / 10.0)?;
        unexplained = unexplained.min((a - finer).abs() - finer_resolution);
    }
    Ok(Comparison {
        numeric,
        resolution,
        // f64::max would turn a NaN into 0 and pass a broken gradient.
        unexplained: nan_max(unexplained, 0.0),
    })
}

/// (L(x + h) - L(x - h)) / 2h from two f32 losses, subtracted in f64 and divided by the step
/// actually taken (x +- h rounds in f32), and its resolution: the rounding noise of the two
/// losses over that step.
fn difference_quotient(loss_at: &dyn Fn(f32) -> Result<f64>, x: f32, h: f64) -> Result<(f64, f64)> {
    let x = x as f64;
    let (xp, xm) = ((x + h) as f32 as f64, (x - h) as f32 as f64);
    let (lp, lm) = (loss_at(xp as f32)?, loss_at(xm as f32)?);
    let noise = NOISE_ULPS * f32::EPSILON as f64 * lp.abs().max(lm.abs());
    Ok(((lp - lm) / (xp - xm), 2.0 * noise / (xp - xm)))
}

/// The coordinate with the largest |gradient| first, then distinct random ones.
fn coordinates(name: &str, analytic: &[f32], opts: &GradcheckOptions) -> Vec<usize> {
    let n = analytic.len();
    let k = opts.coords_per_tensor.min(n);
    let largest = (0..n)
        .max_by(|&i, &j| analytic[i].abs().total_cmp(&analytic[j].abs()))
        .unwrap_or(0);
    let seed = name
        .bytes()
        .fold(opts.seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut coords = vec![largest];
    // k + 1 draws always hold k - 1 that differ from `largest`.
    for c in sample(&mut rng, n, (k + 1).min(n)).into_iter() {
        if coords.len() == k {
            break;
        }
        if c != largest {
            coords.push(c);
        }
    }
    coords
}

/// max that lets a NaN through (f64::max would drop it and hide a broken gradient).
pub(super) fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Which images of a training batch (positions 0..b) the check uses: the first `k`, but
/// with at least two classes among them when the batch has two, so that the contrastive
/// losses have negatives and are not identically zero.
pub fn pick_images(labels: &[usize], k: usize) -> Vec<usize> {
    let k = k.min(labels.len());
    let mut picked: Vec<usize> = (0..k).collect();
    let first = labels.first().copied();
    if k >= 2 && picked.iter().all(|&i| Some(labels[i]) == first) {
        if let Some(other) = (k..labels.len()).find(|&i| Some(labels[i]) != first) {
            picked[k - 1] = other;
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_types_drop_block_indices_only() {
        assert_eq!(layer_type("layer3.5.conv2.weight"), "conv2.weight");
        assert_eq!(
            layer_type("layer1.0.downsample.0.weight"),
            "downsample.0.weight"
        );
        assert_eq!(layer_type("blocks.11.attn.qkv.weight"), "attn.qkv.weight");
        assert_eq!(layer_type("blocks.0.gamma_1"), "gamma_1");
        assert_eq!(layer_type("proj.0.weight"), "proj.0.weight");
        assert_eq!(layer_type("fc.bias"), "fc.bias");
        assert_eq!(layer_type("cls_token"), "cls_token");
    }

    #[test]
    fn picked_images_cover_two_classes() {
        assert_eq!(pick_images(&[3, 1, 4, 1], 2), [0, 1]);
        assert_eq!(pick_images(&[3, 3, 3, 5, 3], 3), [0, 1, 3]);
        assert_eq!(pick_images(&[2, 2], 2), [0, 1]);
        assert_eq!(pick_images(&[0, 1], 5), [0, 1]);
    }

    #[test]
    fn coordinates_start_at_the_largest_gradient_and_are_distinct() {
        let g = [0.1f32, -3.0, 0.2, 0.0, 1.0, 0.5, 0.25];
        let opts = GradcheckOptions {
            coords_per_tensor: 4,
            ..GradcheckOptions::default()
        };
        let c = coordinates("w", &g, &opts);
        assert_eq!(c.len(), 4);
        assert_eq!(c[0], 1);
        let mut sorted = c.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 4);
        assert_eq!(coordinates("w", &g[..1], &opts), [0]);
    }
}
