//! Gradient-checked fine-tuning: before the first step, the analytic gradient of the whole
//! objective (model + heads + loss, on a slice of the first batch) is compared with central
//! finite differences for a sample of coordinates of every layer type, on the device that
//! will train. A wrong backward rule anywhere (a kernel, a layer, the loss) shows up here
//! before hours of training are spent on it.
//!
//! What is compared. Parameters whose names differ only in block indices form one layer type
//! (`layer3.5.conv2.weight` and `layer1.0.conv2.weight` are both `conv2.weight`). Of each
//! type, the first and the last tensor are checked; of each tensor, the coordinate with the
//! largest analytic gradient and random others. The error of a tensor is
//!
//! ```text
//!     max_c |analytic_c - numeric_c| / max( max_c |analytic_c|, max_c |numeric_c|, floor )
//! ```
//!
//! i.e. relative to the largest gradient sampled in that tensor, so that coordinates whose
//! gradient is tiny (and drowned in rounding noise) are held to the tensor's scale, not their
//! own.
//!
//! Why these numbers. The model runs in f32 (unit roundoff u = 6e-8), so the loss L carries
//! rounding noise of roughly e = u * |L| * (a small factor from accumulation). A central
//! difference with step h has truncation error ~ h^2 |L'''| / 6 and noise error ~ e / h; the
//! sum is smallest near h = (3e / |L'''|)^(1/3), about 1e-2 for e ~ 1e-7..1e-6 and
//! |L'''| ~ 1. So h = 1e-2 * max(1, |x|), the difference (L+ - L-) is formed in f64 from the
//! two f32 losses, and divided by the f32 step actually taken (x + h rounds in f32). With h
//! that large a perturbation may move a ReLU or max-pool input across its kink, which bends
//! the difference a little more. Together these leave errors of order 1e-3 on healthy
//! models, while a wrong rule (a missing term, a wrong scale or transpose) gives errors of
//! order 1: the default tolerance of 2e-2 sits between the two with room on both sides.
use std::collections::BTreeMap;

use clce_engine::{no_grad, Tensor};
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::error::{Result, TrainError};

/// Largest accepted error (see the module documentation).
pub const DEFAULT_TOLERANCE: f64 = 2e-2;

/// Finite-difference step relative to max(1, |x|).
const REL_STEP: f64 = 1e-2;

/// Gradients below this are zero as far as an f32 difference quotient with step 1e-2 can tell
/// (a loss difference of ~1e-7 over 2e-2); a tensor whose sampled gradients are all smaller
/// passes unless the two sides differ by more than tolerance * FLOOR.
const FLOOR: f64 = 1e-5;

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

/// One layer type's result.
#[derive(Clone, Debug)]
pub struct Row {
    pub layer_type: String,
    /// The tensors checked.
    pub tensors: Vec<String>,
    pub coords: usize,
    pub max_rel_error: f64,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub rows: Vec<Row>,
    pub tolerance: f64,
    /// The objective at the unperturbed parameters.
    pub loss: f64,
}

impl Report {
    pub fn max_error(&self) -> f64 {
        self.rows
            .iter()
            .map(|r| r.max_rel_error)
            .fold(0.0, f64::max)
    }

    pub fn passed(&self) -> bool {
        // Written so that a NaN error fails.
        self.rows.iter().all(|r| r.max_rel_error <= self.tolerance)
    }

    pub fn coords(&self) -> usize {
        self.rows.iter().map(|r| r.coords).sum()
    }

    /// The table printed before training.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<34} {:<44} {:>6} {:>11}\n",
            "layer type", "parameters checked", "coords", "max rel err"
        );
        for r in &self.rows {
            let verdict = if r.max_rel_error <= self.tolerance {
                ""
            } else {
                "  FAIL"
            };
            out += &format!(
                "{:<34} {:<44} {:>6} {:>11.2e}{verdict}\n",
                r.layer_type,
                shorten(&r.tensors.join(", "), 44),
                r.coords,
                r.max_rel_error
            );
        }
        out
    }

    /// Turns a failed check into the error that stops the run.
    pub fn into_result(self) -> Result<Report> {
        if self.passed() {
            Ok(self)
        } else {
            Err(TrainError::GradcheckFailed {
                max_error: self.max_error(),
                tolerance: self.tolerance,
            })
        }
    }
}

fn shorten(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let head: String = s.chars().take(width - 3).collect();
        head + "..."
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
    // The reference point of the one-sided differences, computed the way the perturbed
    // losses are (without recording gradients).
    let l0 = {
        let _no_grad = no_grad();
        loss()?.to_scalar()?
    };

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
            max_rel_error: 0.0,
        };
        for i in tensors {
            let (name, p) = &params[i];
            let (error, coords) =
                check_tensor(name, p, loss, l0, opts, &mut |n| progress(done + n, total))?;
            done += coords;
            row.tensors.push(name.clone());
            row.coords += coords;
            row.max_rel_error = nan_max(row.max_rel_error, error);
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

/// Checks a few coordinates of one tensor against the loss `l0` at the unperturbed point;
/// returns the tensor's error and how many coordinates were checked.
fn check_tensor(
    name: &str,
    p: &Tensor,
    loss: &dyn Fn() -> Result<Tensor>,
    l0: f64,
    opts: &GradcheckOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<(f64, usize)> {
    let original = p.to_vec_f32()?;
    let analytic = match p.grad() {
        Some(g) => g.to_vec_f32()?,
        None => vec![0.0; original.len()],
    };
    let coords = coordinates(name, &analytic, opts);
    // The first coordinate has the tensor's largest gradient: it sets the scale.
    let scale = (analytic[coords[0]].abs() as f64).max(FLOOR);

    let _no_grad = no_grad();
    let mut max_diff: f64 = 0.0;
    let mut max_grad: f64 = 0.0;
    let mut result = Ok(());
    for (n, &c) in coords.iter().enumerate() {
        let loss_at = |value: f32| -> Result<f64> {
            let mut values = original.clone();
            values[c] = value;
            p.assign(&Tensor::from_vec(values, p.dims().to_vec(), p.device())?)?;
            Ok(loss()?.to_scalar()?)
        };
        let numeric = match difference_quotient(&loss_at, original[c], l0, opts.tolerance * scale) {
            Ok(d) => d,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let a = analytic[c] as f64;
        max_diff = nan_max(max_diff, (a - numeric).abs());
        max_grad = nan_max(max_grad, a.abs().max(numeric.abs()));
        progress(n + 1);
    }
    // Restore the exact original values whatever happened.
    p.assign(&Tensor::from_vec(original, p.dims().to_vec(), p.device())?)?;
    result?;
    Ok((max_diff / max_grad.max(FLOOR), coords.len()))
}

/// The central difference quotient of `loss_at` at `x` (where the loss is `l0`), in f64 from
/// f32 losses, over the step actually taken in f32.
///
/// Kinks: with a step of 1e-2, a ReLU or max-pool input may cross its kink inside the step,
/// and the quotient then mixes two slopes. The one-sided quotients (L+ - L0)/h and
/// (L0 - L-)/h show it: the central quotient is off by at most about half their difference.
/// While that half-difference could exceed a quarter of the allowed error (`allowed`), the
/// step is cut tenfold (up to twice: 1e-3 and 1e-4 still leave the f32 noise well below the
/// tolerance). A wrong backward rule does not make the two sides differ, so this never hides
/// a bug; it only keeps an unlucky step from raising a false alarm.
fn difference_quotient(
    loss_at: &dyn Fn(f32) -> Result<f64>,
    x: f32,
    l0: f64,
    allowed: f64,
) -> Result<f64> {
    const RETRIES: usize = 2;
    let x64 = x as f64;
    let mut h = REL_STEP * x64.abs().max(1.0);
    let mut quotient = f64::NAN;
    for _ in 0..=RETRIES {
        let (xp, xm) = ((x64 + h) as f32 as f64, (x64 - h) as f32 as f64);
        let (lp, lm) = (loss_at(xp as f32)?, loss_at(xm as f32)?);
        quotient = (lp - lm) / (xp - xm);
        let (right, left) = ((lp - l0) / (xp - x64), (l0 - lm) / (x64 - xm));
        if (right - left).abs() / 2.0 <= allowed / 4.0 {
            break;
        }
        h /= 10.0;
    }
    Ok(quotient)
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
fn nan_max(a: f64, b: f64) -> f64 {
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
