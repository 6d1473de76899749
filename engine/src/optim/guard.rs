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
//! With dynamic loss scaling ([`LossScaling`], `--precision f16`; torch's GradScaler and its
//! `_amp_update_scale_`), the state also holds the loss scale, the good steps since it last
//! changed and the count of skipped steps. The training loop multiplies the loss by
//! [`StepGuard::loss_scale`] (a device tensor) before backward; the check measures the
//! gradients divided by the scale, and folds 1/scale into the factor AdamW applies, so
//! clipping and AdamW see unscaled gradients. A non-finite gradient norm then skips only this
//! step (AdamW changes nothing and the step does not count for bias correction), halves the
//! scale and restarts the growth count; `growth_interval` good steps in a row double it. A
//! non-finite norm at the floor scale ([`LOSS_SCALE_FLOOR`]) is not an overflow that scaling
//! can cure: it is the run's first bad step, as without scaling (where the scale is 1, the
//! floor, so the first non-finite norm is). A non-finite loss is always the first bad step:
//! the loss is computed in f32 before any scaling.
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
const LOSS_SCALE: usize = 5;
const GOOD_STEPS: usize = 6;
const SKIPPED: usize = 7;
const SKIP_THIS: usize = 8;
/// Length of the state tensor.
pub const GUARD_STATE_LEN: usize = 12;

/// The smallest loss scale. Below 1 a scale would shrink gradients, which in this engine are
/// f32 (only saved activations are stored in f16): a gradient still not finite at scale 1
/// is not an f16 overflow but a broken step.
pub const LOSS_SCALE_FLOOR: f64 = 1.0;

/// Dynamic loss scaling (torch.amp.GradScaler's semantics, backoff 0.5 and growth 2).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossScaling {
    /// The first scale (torch: 2^16).
    pub init: f64,
    /// Good steps in a row after which the scale doubles (torch: 2000).
    pub growth_interval: usize,
}

impl Default for LossScaling {
    fn default() -> Self {
        LossScaling {
            init: 65536.0,
            growth_interval: 2000,
        }
    }
}

impl LossScaling {
    /// Rejects settings the state cannot hold, naming the setting.
    pub fn validate(&self) -> Result<()> {
        if !(self.init.is_finite() && self.init >= LOSS_SCALE_FLOOR && self.init <= f32::MAX as f64)
        {
            return Err(Error::invalid(
                "loss scaling",
                format!(
                    "the initial loss scale {} must be a number from {LOSS_SCALE_FLOOR} to {:e}",
                    self.init,
                    f32::MAX
                ),
            ));
        }
        if self.growth_interval == 0 || self.growth_interval >= 1 << 24 {
            return Err(Error::invalid(
                "loss scaling",
                format!(
                    "the growth interval {} must be in 1 .. 2^24 steps",
                    self.growth_interval
                ),
            ));
        }
        Ok(())
    }
}

/// Where loss scaling stands: what a checkpoint keeps so that a resumed run scales as the
/// uninterrupted one would have.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossScaleState {
    pub scale: f64,
    /// Good steps since the scale last changed.
    pub good_steps: usize,
    /// Steps skipped since the run started.
    pub skipped_steps: usize,
}

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
    /// The global gradient norm of the last checked step, before clipping (of the unscaled
    /// gradients).
    pub grad_norm: f64,
    /// The loss scale for the next step and the counts behind it (scale 1 and zero counts
    /// without loss scaling).
    pub loss_scale: LossScaleState,
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
            loss_scale: LossScaleState {
                scale: values[LOSS_SCALE] as f64,
                good_steps: values[GOOD_STEPS] as usize,
                skipped_steps: values[SKIPPED] as usize,
            },
        }
    }
}

pub struct StepGuard {
    state: Tensor,
    /// None: no loss scaling (the scale stays 1).
    growth_interval: Option<usize>,
}

/// What the CPU's AdamW does with a checked step.
pub(super) struct HostVerdict {
    /// A bad step was seen: change nothing, count nothing.
    pub stopped: bool,
    /// This step overflowed under loss scaling: change nothing, but it was a step.
    pub skip: bool,
    /// The factor the gradients are multiplied by (clip factor / loss scale).
    pub grad_scale: f64,
    /// Steps skipped so far, which bias correction does not count.
    pub skipped: u64,
}

impl StepGuard {
    /// A guard with no step checked yet (no bad step, update scale 1), without loss scaling.
    pub fn new(device: &Device) -> Result<StepGuard> {
        Self::with_state(device, None, 1.0, 0, 0)
    }

    /// A guard that scales the loss as `scaling` says, from its initial scale or, resuming a
    /// run, from where the run stood.
    pub fn with_loss_scaling(
        device: &Device,
        scaling: LossScaling,
        resume: Option<LossScaleState>,
    ) -> Result<StepGuard> {
        scaling.validate()?;
        let at = resume.unwrap_or(LossScaleState {
            scale: scaling.init,
            good_steps: 0,
            skipped_steps: 0,
        });
        if !(at.scale.is_finite() && at.scale >= LOSS_SCALE_FLOOR) {
            return Err(Error::invalid(
                "loss scaling",
                format!("a saved loss scale of {} cannot be resumed", at.scale),
            ));
        }
        Self::with_state(
            device,
            Some(scaling.growth_interval),
            at.scale,
            at.good_steps,
            at.skipped_steps,
        )
    }

    fn with_state(
        device: &Device,
        growth_interval: Option<usize>,
        scale: f64,
        good_steps: usize,
        skipped: usize,
    ) -> Result<StepGuard> {
        let mut values = vec![0f32; GUARD_STATE_LEN];
        values[SCALE] = 1.0;
        values[LOSS_SCALE] = scale as f32;
        values[GOOD_STEPS] = good_steps as f32;
        values[SKIPPED] = skipped as f32;
        Ok(StepGuard {
            state: Tensor::from_vec(values, [GUARD_STATE_LEN], device)?,
            growth_interval,
        })
    }

    /// Whether this guard scales the loss.
    pub fn scales_loss(&self) -> bool {
        self.growth_interval.is_some()
    }

    /// The loss scale of the next step as a one-element tensor on the guard's device, to
    /// multiply the loss by before backward (nothing is read back); None without loss
    /// scaling or on the meta device.
    pub fn loss_scale(&self) -> Result<Option<Tensor>> {
        if self.growth_interval.is_none() || self.state.device().is_meta() {
            return Ok(None);
        }
        Ok(Some(self.state.narrow(0, LOSS_SCALE, 1)?))
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
                loss_scale: LossScaleState {
                    scale: 1.0,
                    good_steps: 0,
                    skipped_steps: 0,
                },
            });
        }
        Ok(GuardReport::from_values(&self.state.to_vec_f32()?))
    }

    /// After backward of step `step` (counted from 1, below 2^24: the state is f32): the
    /// gradient norm of `params`' gradients (each distinct parameter once; those without a
    /// gradient skipped) divided by the loss scale, the clip factor for `max_norm`, and
    /// whether `loss` (a one-element tensor, unscaled) or the norm is the first non-finite
    /// value, or, under loss scaling, whether to skip the step and how the scale moves.
    /// Reads nothing back from a GPU.
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
                    self.growth_interval.unwrap_or(0),
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
        let inv_scale = 1.0 / state[LOSS_SCALE];
        let mut sum_of_squares = 0.0;
        for g in grads {
            let g = if inv_scale == 1.0 {
                g.clone()
            } else {
                g.mul_scalar(inv_scale as f64)?
            };
            sum_of_squares += g.mul(&g)?.sum_all()?.to_scalar()?;
        }
        let norm = sum_of_squares.sqrt();
        let loss = loss.to_scalar()?;
        state[NORM] = norm as f32;
        let clip = match max_norm {
            Some(max_norm) if max_norm / (norm + 1e-6) < 1.0 => (max_norm / (norm + 1e-6)) as f32,
            _ => 1.0,
        };
        state[SCALE] = clip * inv_scale;
        state[SKIP_THIS] = 0.0;
        if state[FIRST_BAD_STEP] == 0.0 {
            let mut bad = None;
            if !loss.is_finite() {
                bad = Some((1.0, loss));
            } else if !norm.is_finite() {
                if state[LOSS_SCALE] as f64 <= LOSS_SCALE_FLOOR {
                    bad = Some((2.0, norm));
                } else {
                    state[SKIP_THIS] = 1.0;
                    state[SKIPPED] += 1.0;
                    state[LOSS_SCALE] *= 0.5;
                    state[GOOD_STEPS] = 0.0;
                }
            } else if let Some(interval) = self.growth_interval {
                state[GOOD_STEPS] += 1.0;
                if state[GOOD_STEPS] >= interval as f32 {
                    let grown = state[LOSS_SCALE] * 2.0;
                    if grown.is_finite() {
                        state[LOSS_SCALE] = grown;
                    }
                    state[GOOD_STEPS] = 0.0;
                }
            }
            if let Some((what, value)) = bad {
                state[FIRST_BAD_STEP] = step as f32;
                state[WHAT] = what;
                state[VALUE] = value as f32;
            }
        }
        Tensor::from_vec(state, [GUARD_STATE_LEN], &Device::Cpu)
    }

    /// On the CPU: what AdamW does with the last checked step.
    pub(super) fn host_verdict(&self) -> Result<HostVerdict> {
        let state = self.state.to_vec_f32()?;
        Ok(HostVerdict {
            stopped: state[FIRST_BAD_STEP] != 0.0,
            skip: state[SKIP_THIS] != 0.0,
            grad_scale: state[SCALE] as f64,
            skipped: state[SKIPPED] as u64,
        })
    }
}
