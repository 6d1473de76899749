//! Gradient-checked fine-tuning: before the first step, the gradient of the whole objective
//! (model + heads + loss, on a slice of the first batch) is checked for a sample of tensors
//! of every layer type, so that a wrong backward rule anywhere (a kernel, a layer, the loss)
//! shows up before hours of training are spent on it.
//!
//! Two comparisons, each against something trustworthy:
//!
//! 1. The device's analytic gradient (f32, the kernels that will train) against the analytic
//!    gradient of the same model computed in f64 on the CPU (a reference copy of the network
//!    and the batch), over every coordinate of each checked tensor. This catches a wrong GPU
//!    (or f32) kernel.
//! 2. That f64 analytic gradient against f64 central differences with a tiny step
//!    (h = 1e-6 max(1, |x|)), for the coordinate with the largest gradient and random others.
//!    This catches a wrong backward rule, which both analytic gradients would share.
//!
//! Why not f32 differences on the device, as before: an f32 loss carries rounding noise of a
//! few ulps, which forces steps near 1e-2, and such steps carry ReLU and max-pool inputs
//! across their kinks; on real images that disagreed with correct gradients by up to 99 %
//! and refused good runs. In f64 the noise of a difference quotient is 1e-10 relative at
//! h = 1e-6, and few kinks lie that close.
//!
//! Kinks. Where an activation pattern (a ReLU's sign, a max-pool's argmax) changes within the
//! step, the loss is not differentiable there and the quotient means nothing. Such a step is
//! recognised by its one-sided quotients, (L(x+h) - L(x)) / h and (L(x) - L(x-h)) / h, which
//! then disagree by more than the central quotient disagrees with the analytic gradient (a
//! wrong rule cannot make them disagree: they are both differences of the same function).
//! The coordinate is tried again with a step 1000 times smaller and, if the kink is still
//! inside, skipped and counted (`kinked` in the table).
//!
//! The verdict. A tensor's errors are |difference| relative to its largest gradient (tiny
//! gradients are held to the tensor's scale, not their own), the device's beyond nothing
//! and the differences' beyond their rounding noise. Both must be within the tolerance
//! (1e-2 by default): on correct code the device's f32 gradient is within 1e-4 of the f64
//! one and the f64 differences within 1e-6, while a wrong rule (a missing term, a wrong scale
//! or transpose) errs by 0.3 or more at the largest gradient. Finer errors than that are the
//! business of the op-level checks (`clce-cli gradcheck`).
use std::collections::BTreeMap;

use clce_engine::{no_grad, DType, Device, Tensor};
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod report;

pub use report::{Report, Row};

use super::error::{Result, TrainError};

/// Largest accepted relative error (see the module documentation).
pub const DEFAULT_TOLERANCE: f64 = 1e-2;

/// Finite-difference step relative to max(1, |x|), and the smaller one a kinked coordinate
/// is tried again with.
const STEPS: [f64; 2] = [1e-6, 1e-9];

/// Rounding noise of one f64 loss evaluation, in units of the last place of the loss.
const NOISE_ULPS: f64 = 64.0;

/// One side of the check: named parameters and the loss as a function of them.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    pub params: &'a [(String, Tensor)],
    pub loss: &'a dyn Fn() -> Result<Tensor>,
}

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

/// Checks the gradient of `device.loss` with respect to `device.params` against
/// `reference`, the same function and parameters (same names, same order) in f64 on the CPU.
/// Both losses must compute the same function on every call (eval mode: no dropout or drop
/// path, BatchNorm on its running statistics). `progress(done, total)` is called after each
/// coordinate. Leaves every parameter exactly as it found it, with no gradient.
pub fn check(
    device: Side,
    reference: Side,
    opts: &GradcheckOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report> {
    if device.params.len() != reference.params.len()
        || device
            .params
            .iter()
            .zip(reference.params)
            .any(|((a, x), (b, y))| a != b || x.dims() != y.dims())
    {
        return Err(TrainError::Invalid(
            "the gradient check's f64 reference does not have the model's parameters".into(),
        ));
    }
    let loss_value = gradients(&device)?;
    let reference_loss = gradients(&reference)?;

    let plan = plan(device.params, opts);
    let total: usize = plan
        .iter()
        .flat_map(|(_, tensors)| tensors)
        .map(|&i| opts.coords_per_tensor.min(device.params[i].1.numel()))
        .sum();
    let mut done = 0;
    let mut rows = Vec::new();
    let result = (|| -> Result<()> {
        for (layer_type, tensors) in plan {
            let mut row = Row::new(layer_type);
            for i in tensors {
                let (name, p) = &device.params[i];
                let r = &reference.params[i].1;
                let t = check_tensor(name, p, r, &reference, reference_loss, opts, &mut |n| {
                    progress(done + n, total)
                })?;
                done += t.coords;
                row.add(name, &t);
            }
            rows.push(row);
        }
        Ok(())
    })();
    for (_, p) in device.params.iter().chain(reference.params) {
        p.zero_grad();
    }
    result?;
    Ok(Report {
        rows,
        tolerance: opts.tolerance,
        loss: loss_value,
    })
}

/// Runs one side's forward and backward pass from zero gradients; returns its loss, which
/// must be finite.
fn gradients(side: &Side) -> Result<f64> {
    for (_, p) in side.params {
        p.zero_grad();
    }
    let l = (side.loss)()?;
    let value = l.to_scalar()?;
    if !value.is_finite() {
        return Err(TrainError::NonFinite {
            what: "loss of the gradient check",
            value,
            step: 0,
            epoch: 1,
        });
    }
    l.backward()?;
    Ok(value)
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
pub(crate) struct TensorCheck {
    /// Largest |device - f64 analytic| over the tensor, relative to its largest gradient.
    pub device_error: f64,
    /// Largest |f64 analytic - f64 difference| beyond the differences' rounding noise,
    /// relative to the tensor's largest gradient, over the coordinates not kinked.
    pub difference_error: f64,
    pub coords: usize,
    /// Coordinates skipped: an activation pattern changes within the step.
    pub kinked: usize,
}

/// Checks one tensor: `p` on the device, `r` its f64 reference copy.
fn check_tensor(
    name: &str,
    p: &Tensor,
    r: &Tensor,
    reference: &Side,
    l0: f64,
    opts: &GradcheckOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<TensorCheck> {
    let grad = |t: &Tensor| -> Result<Vec<f64>> {
        Ok(match t.grad() {
            Some(g) => g.to_vec_f64()?,
            None => vec![0.0; t.numel()],
        })
    };
    let (on_device, analytic) = (grad(p)?, grad(r)?);
    let scale = analytic
        .iter()
        .chain(&on_device)
        .fold(0.0, |m: f64, v| nan_max(m, v.abs()));
    let relative = |e: f64| if e == 0.0 { 0.0 } else { e / scale };
    let device_error = relative(
        on_device
            .iter()
            .zip(&analytic)
            .fold(0.0, |m, (d, a)| nan_max(m, (d - a).abs())),
    );

    let original = r.to_vec_f64()?;
    let as_f32: Vec<f32> = analytic.iter().map(|&v| v as f32).collect();
    let coords = coordinates(name, &as_f32, opts);
    let _no_grad = no_grad();
    let loss_at = |c: usize, value: f64| -> Result<f64> {
        let mut values = original.clone();
        values[c] = value;
        r.assign(&Tensor::from_f64_slice(
            &values,
            r.dims(),
            DType::F64,
            &Device::Cpu,
        )?)?;
        Ok((reference.loss)()?.to_scalar()?)
    };
    let (mut difference_error, mut kinked) = (0.0, 0);
    let mut result = Ok(());
    for (n, &c) in coords.iter().enumerate() {
        let at = |value: f64| loss_at(c, value);
        match compare(&at, original[c], l0, analytic[c], scale * opts.tolerance) {
            Ok(Some(e)) => difference_error = nan_max(difference_error, relative(e)),
            Ok(None) => kinked += 1,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
        progress(n + 1);
    }
    // Restore the exact original values whatever happened.
    r.assign(&Tensor::from_f64_slice(
        &original,
        r.dims(),
        DType::F64,
        &Device::Cpu,
    )?)?;
    result?;
    Ok(TensorCheck {
        device_error,
        difference_error,
        coords: coords.len(),
        kinked,
    })
}

/// |a - central difference quotient of `loss_at` at x| beyond the quotient's rounding noise,
/// with the first step of STEPS that either agrees within `allowed` or has no kink inside;
/// None when every step has a kink inside (see the module documentation).
fn compare(
    loss_at: &dyn Fn(f64) -> Result<f64>,
    x: f64,
    l0: f64,
    a: f64,
    allowed: f64,
) -> Result<Option<f64>> {
    for rel in STEPS {
        let h = rel * x.abs().max(1.0);
        // The steps actually taken (x +- h rounds).
        let (xp, xm) = (x + h, x - h);
        let (lp, lm) = (loss_at(xp)?, loss_at(xm)?);
        let noise = NOISE_ULPS * f64::EPSILON * lp.abs().max(lm.abs()).max(l0.abs());
        let central = (lp - lm) / (xp - xm);
        let error = (a - central).abs() - 2.0 * noise / (xp - xm);
        // f64::max would turn a NaN into 0 and pass a broken gradient.
        let error = nan_max(error, 0.0);
        let one_sided = ((lp - l0) / (xp - x) - (l0 - lm) / (x - xm)).abs() - 4.0 * noise / h;
        if error <= allowed || one_sided <= error {
            return Ok(Some(error));
        }
    }
    Ok(None)
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
