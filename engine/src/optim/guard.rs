//! The health check of training steps that never waits for the device.
//!
//! Reading the loss or the gradient norm back after every step costs a GPU round trip per
//! step (several with per-parameter norms). Instead, a [`StepGuard`] keeps a small state
//! tensor on the parameters' device that each step's [`StepGuard::check`] updates after
//! backward, on the device:
//! - the global L2 gradient norm of the step (one sum of squares per gradient, then one tiny
//!   kernel), and the factor that clips it to `max_norm` (`--clip-grad`), which AdamW applies
//!   while it reads the gradient ([`crate::optim::AdamW::step_guarded`]);
//! - the first step whose loss or gradient norm was not finite, what it was and its value.
//!   From that step on the flag stays set and AdamW leaves every parameter and its state as
//!   they are (as torch's GradScaler skips a step), so the weights stay those from before the
//!   bad step however late the host looks.
//!
//! The host reads the state when it wants to ([`StepGuard::read`], or the values of
//! [`StepGuard::state`] read together with other tensors, [`GuardReport::from_values`]):
//! the training loop does at logging time, and before anything is saved.
//!
//! On the CPU the same arithmetic runs on the host (reading is free there) with the same
//! result; the meta device keeps no state.
use std::collections::HashSet;

use crate::{no_grad, DType, Device, Error, Result, Storage, Tensor};

/// Slots of the state tensor (shaders/guard.wgsl uses the same numbers).
const FIRST_BAD_STEP: usize = 0;
const WHAT: usize = 1;
const VALUE: usize = 2;
const SCALE: usize = 3;
const NORM: usize = 4;
/// Length of the state tensor.
pub const GUARD_STATE_LEN: usize = 8;

/// A step whose loss or gradient norm was not finite.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BadStep {
    /// As counted by the caller of `check` (the training loop counts from 1).
    pub step: usize,
    /// "loss" or "gradient norm".
    pub what: &'static str,
    pub value: f64,
}

/// What the state says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GuardReport {
    /// The first bad step since the guard was made; AdamW has updated nothing since.
    pub first_bad: Option<BadStep>,
    /// The global gradient norm of the last checked step, before clipping.
    pub grad_norm: f64,
}

impl GuardReport {
    /// The report in the state's values (the first [`GUARD_STATE_LEN`] of `values`).
    pub fn from_values(values: &[f32]) -> GuardReport {
        let first_bad = (values[FIRST_BAD_STEP] != 0.0).then(|| BadStep {
            step: values[FIRST_BAD_STEP] as usize,
            what: if values[WHAT] == 1.0 {
                "loss"
            } else {
                "gradient norm"
            },
            value: values[VALUE] as f64,
        });
        GuardReport {
            first_bad,
            grad_norm: values[NORM] as f64,
        }
    }
}

pub struct StepGuard {
    state: Tensor,
}

impl StepGuard {
    /// A guard with no step checked yet (no bad step, update scale 1).
    pub fn new(device: &Device) -> Result<StepGuard> {
        let mut values = vec![0f32; GUARD_STATE_LEN];
        values[SCALE] = 1.0;
        Ok(StepGuard {
            state: Tensor::from_vec(values, [GUARD_STATE_LEN], device)?,
        })
    }

    /// The state tensor, to read along with other values in one readback.
    pub fn state(&self) -> &Tensor {
        &self.state
    }

    /// Reads the state back (a blocking readback on a GPU).
    pub fn read(&self) -> Result<GuardReport> {
        if self.state.device().is_meta() {
            return Ok(GuardReport {
                first_bad: None,
                grad_norm: 0.0,
            });
        }
        Ok(GuardReport::from_values(&self.state.to_vec_f32()?))
    }

    /// After backward of step `step` (counted from 1, below 2^24: the state is f32): the
    /// gradient norm of `params`' gradients (each distinct parameter once; those without a
    /// gradient skipped), the clip factor for `max_norm`, and whether `loss` (a one-element
    /// tensor) or the norm is the first non-finite value. Reads nothing back from a GPU.
    pub fn check(
        &mut self,
        step: usize,
        loss: &Tensor,
        params: &[Tensor],
        max_norm: Option<f64>,
    ) -> Result<()> {
        if let Some(max_norm) = max_norm {
            if !(max_norm.is_finite() && max_norm > 0.0) {
                return Err(Error::invalid(
                    "clip_grad_norm",
                    format!("max_norm {max_norm} must be finite and > 0"),
                ));
            }
        }
        if step == 0 || step >= 1 << 24 {
            return Err(Error::invalid(
                "step guard",
                format!("step {step} must be in 1 .. 2^24"),
            ));
        }
        if loss.numel() != 1 {
            return Err(Error::shape(
                "step guard",
                format!("the loss has shape {} instead of one value", loss.shape()),
            ));
        }
        let _no_grad = no_grad();
        let mut seen = HashSet::new();
        let grads: Vec<Tensor> = params
            .iter()
            .filter(|p| seen.insert(p.id()))
            .filter_map(Tensor::grad)
            .collect();
        let device = self.state.device().clone();
        let next = match &device {
            Device::Meta(_) => return Ok(()),
            Device::Cpu => self.check_on_host(step, loss, &grads, max_norm)?,
            Device::Gpu(_) => {
                let loss = loss.to_dtype(DType::F32)?;
                let gpu = |t: &Tensor| t.gpu_storage("step guard");
                let grads = grads.iter().map(gpu).collect::<Result<Vec<_>>>()?;
                let grads: Vec<_> = grads.iter().collect();
                let next = super::gpu::guard_check(
                    &gpu(&self.state)?,
                    &gpu(&loss)?,
                    &grads,
                    step,
                    max_norm,
                )?;
                Tensor::from_storage(Storage::Gpu(next), [GUARD_STATE_LEN].into(), device)
            }
        };
        self.state = next;
        Ok(())
    }

    /// The CPU's check: exactly what shaders/guard.wgsl computes, with the sums of squares in
    /// f64 across parameters (as `clip_grad_norm` does).
    fn check_on_host(
        &self,
        step: usize,
        loss: &Tensor,
        grads: &[Tensor],
        max_norm: Option<f64>,
    ) -> Result<Tensor> {
        let mut state = self.state.to_vec_f32()?;
        let mut sum_of_squares = 0.0;
        for g in grads {
            sum_of_squares += g.mul(g)?.sum_all()?.to_scalar()?;
        }
        let norm = sum_of_squares.sqrt();
        let loss = loss.to_scalar()?;
        state[NORM] = norm as f32;
        state[SCALE] = match max_norm {
            Some(max_norm) if max_norm / (norm + 1e-6) < 1.0 => (max_norm / (norm + 1e-6)) as f32,
            _ => 1.0,
        };
        if state[FIRST_BAD_STEP] == 0.0 {
            let bad = if !loss.is_finite() {
                Some((1.0, loss))
            } else if !norm.is_finite() {
                Some((2.0, norm))
            } else {
                None
            };
            if let Some((what, value)) = bad {
                state[FIRST_BAD_STEP] = step as f32;
                state[WHAT] = what;
                state[VALUE] = value as f32;
            }
        }
        Tensor::from_vec(state, [GUARD_STATE_LEN], &Device::Cpu)
    }

    /// On the CPU: None when a bad step was seen (the update must be skipped), else the factor
    /// to scale the gradients by.
    pub(super) fn host_scale(&self) -> Result<Option<f32>> {
        let state = self.state.to_vec_f32()?;
        Ok((state[FIRST_BAD_STEP] == 0.0).then_some(state[SCALE]))
    }
}
