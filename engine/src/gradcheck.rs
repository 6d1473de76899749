//! Finite-difference gradient checking.
//!
//! A [`Case`] is a function of some tensors. Its output is reduced to a scalar with a fixed
//! random projection, loss = sum(f(x) * R), so every output element is checked. The analytic
//! gradient comes from `backward` on the device under test; the reference comes from central
//! differences, (loss(x + h) - loss(x - h)) / 2h, evaluated on the CPU in f64 where they are
//! accurate to ~1e-9. The error of one input is ||analytic - numeric|| / max(||numeric||, 1e-3).
use std::sync::Arc;

use crate::autograd::no_grad;
use crate::{DType, Device, Result, Tensor};

type CaseFn = Arc<dyn Fn(&[Tensor]) -> Result<Tensor> + Send + Sync>;

/// `init(input index, shape, seed)`: an input's values.
type InitFn = Arc<dyn Fn(usize, &[usize], u64) -> Vec<f64> + Send + Sync>;

#[derive(Clone)]
pub struct Case {
    pub name: String,
    pub shapes: Vec<Vec<usize>>,
    f: CaseFn,
    seed: u64,
    /// Inputs that are data, not parameters (e.g. labels-derived masks): not differentiated.
    frozen: Vec<usize>,
    /// Gives each input its own values instead of standard normal ones.
    init: Option<InitFn>,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub name: String,
    pub shapes: String,
    pub device: String,
    pub max_rel_error: f64,
    pub tolerance: f64,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.max_rel_error <= self.tolerance
    }
    /// One line of the `gradcheck` table.
    pub fn row(&self) -> String {
        format!(
            "{:<24} {:<40} {:>11.3e}  {}",
            self.name,
            self.shapes,
            self.max_rel_error,
            if self.passed() { "pass" } else { "FAIL" }
        )
    }
}

/// Analytic gradients are f64 on the CPU; f32 elsewhere (rounding sets the tolerance).
pub fn tolerance_for(device: &Device) -> f64 {
    if device.is_cpu() {
        1e-6
    } else {
        2e-3
    }
}

impl Case {
    pub fn new(
        name: &str,
        shapes: &[&[usize]],
        f: impl Fn(&[Tensor]) -> Result<Tensor> + Send + Sync + 'static,
    ) -> Case {
        let seed = name.bytes().fold(1469598103934665603u64, |h, b| {
            (h ^ b as u64).wrapping_mul(1099511628211)
        });
        Case {
            name: name.to_string(),
            shapes: shapes.iter().map(|s| s.to_vec()).collect(),
            f: Arc::new(f),
            seed,
            frozen: vec![],
            init: None,
        }
    }

    /// Marks inputs that must not be perturbed (their gradient is not checked).
    pub fn frozen(mut self, inputs: &[usize]) -> Case {
        self.frozen = inputs.to_vec();
        self
    }

    /// Custom input values: `init(input index, shape, seed)` returns the input's values.
    pub fn with_init(
        mut self,
        init: impl Fn(usize, &[usize], u64) -> Vec<f64> + Send + Sync + 'static,
    ) -> Case {
        self.init = Some(Arc::new(init));
        self
    }

    pub fn shapes_string(&self) -> String {
        self.shapes
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Evaluates the case's function.
    pub fn apply(&self, inputs: &[Tensor]) -> Result<Tensor> {
        (self.f)(inputs)
    }

    /// Whether input `i` is data rather than a parameter.
    pub fn is_frozen(&self, i: usize) -> bool {
        self.frozen.contains(&i)
    }

    /// The inputs' values: standard normal, or the case's own.
    pub fn input_values(&self) -> Result<Vec<Vec<f64>>> {
        self.shapes
            .iter()
            .enumerate()
            .map(|(i, s)| match &self.init {
                Some(init) => Ok(init(i, s, self.seed + i as u64)),
                None => Tensor::randn(
                    s.as_slice(),
                    1.0,
                    self.seed + i as u64,
                    DType::F64,
                    &Device::Cpu,
                )?
                .to_vec_f64(),
            })
            .collect()
    }

    /// sum(f(inputs) * R) on `device`; R is drawn once per case.
    fn projected(
        &self,
        values: &[Vec<f64>],
        device: &Device,
        dtype: DType,
        track: bool,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let inputs: Vec<Tensor> = values
            .iter()
            .zip(&self.shapes)
            .enumerate()
            .map(|(i, (v, s))| {
                let t = Tensor::from_f64_slice(v, s.as_slice(), dtype, device)?;
                Ok(if track && !self.frozen.contains(&i) {
                    t.set_requires_grad(true)
                } else {
                    t
                })
            })
            .collect::<Result<_>>()?;
        let y = (self.f)(&inputs)?;
        let r = Tensor::randn(y.shape().clone(), 1.0, self.seed ^ 0x5eed, dtype, device)?;
        Ok((y.mul(&r)?.sum_all()?, inputs))
    }

    pub fn run(&self, device: &Device) -> Result<Report> {
        let values = self.input_values()?;
        let dtype = if device.is_cpu() {
            DType::F64
        } else {
            DType::F32
        };
        let (loss, inputs) = self.projected(&values, device, dtype, true)?;
        let mut max_err: f64 = 0.0;
        if loss.requires_grad() {
            loss.backward()?;
        }
        let h = 1e-6;
        let _g = no_grad();
        for (i, input) in inputs.iter().enumerate() {
            if self.frozen.contains(&i) {
                continue;
            }
            let analytic = match input.grad() {
                Some(g) => g.to_vec_f64()?,
                None => vec![0.0; input.numel()],
            };
            let mut numeric = vec![0.0; input.numel()];
            let mut perturbed = values.clone();
            for j in 0..input.numel() {
                let x0 = values[i][j];
                perturbed[i][j] = x0 + h;
                let up = self
                    .projected(&perturbed, &Device::Cpu, DType::F64, false)?
                    .0
                    .to_scalar()?;
                perturbed[i][j] = x0 - h;
                let down = self
                    .projected(&perturbed, &Device::Cpu, DType::F64, false)?
                    .0
                    .to_scalar()?;
                perturbed[i][j] = x0;
                numeric[j] = (up - down) / (2.0 * h);
            }
            let diff: f64 = analytic
                .iter()
                .zip(&numeric)
                .map(|(a, n)| (a - n).powi(2))
                .sum::<f64>()
                .sqrt();
            let norm: f64 = numeric.iter().map(|n| n * n).sum::<f64>().sqrt();
            max_err = max_err.max(diff / norm.max(1e-3));
            if !diff.is_finite() {
                max_err = f64::INFINITY;
            }
        }
        Ok(Report {
            name: self.name.clone(),
            shapes: self.shapes_string(),
            device: device.to_string(),
            max_rel_error: max_err,
            tolerance: tolerance_for(device),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_gradient_fails_the_check() {
        // x * x recorded with a deliberately wrong rule: detach one factor, so the analytic
        // gradient is x instead of 2x.
        let case = Case::new("wrong", &[&[5]], |x| x[0].mul(&x[0].detach()));
        let r = case.run(&Device::Cpu).unwrap();
        assert!(!r.passed(), "{}", r.row());
        assert!(r.max_rel_error > 0.4);
        let right = Case::new("right", &[&[5]], |x| x[0].mul(&x[0]));
        assert!(right.run(&Device::Cpu).unwrap().passed());
    }
}
