//! Optimisers, gradient clipping and the learning-rate schedule of fine-tuning.
//!
//! An optimiser owns [`ParamGroup`]s: parameters (leaves made with `set_requires_grad(true)`)
//! that share an lr scale and a weight decay, so that BEiT's layer-wise lr decay and the
//! "no decay on biases and norms" rule are just differently configured groups. `step(lr)`
//! reads every parameter's accumulated `.grad()` and updates the parameter's storage in place;
//! the per-element arithmetic lives in one small function per device (`cpu.rs`, and `gpu.rs`
//! with shaders/optim.wgsl). The training loop owns the step counter, asks the
//! [`WarmupCosine`] schedule for the step's lr and passes it to `step`.
mod adamw;
mod clip;
mod cpu;
mod gpu;
mod group;
mod guard;
mod schedule;
mod sgd;
mod state;
#[cfg(test)]
mod tests;

pub use adamw::{AdamW, AdamWConfig};
pub use clip::clip_grad_norm;
pub use group::{skips_weight_decay, Param, ParamGroup};
pub use guard::{
    BadStep, GuardReport, LossScaleState, LossScaling, StepGuard, GUARD_STATE_LEN, LOSS_SCALE_FLOOR,
};
pub use schedule::WarmupCosine;
pub use sgd::{Sgd, SgdConfig};

use crate::{Result, Tensor};

/// What the training loop needs from any optimiser.
pub trait Optimizer {
    /// Updates every parameter that has a gradient, with learning rate `lr` times its group's
    /// lr scale. Parameters without a gradient are left alone (and their state does not age).
    fn step(&mut self, lr: f64) -> Result<()>;

    fn groups(&self) -> &[ParamGroup];

    /// Forgets the gradients of every parameter (call before each accumulation window).
    fn zero_grad(&self) {
        for p in self.groups().iter().flat_map(|g| &g.params) {
            p.tensor.zero_grad();
        }
    }

    /// Every parameter, group after group: the indices used in `state_dict` names.
    fn params(&self) -> Vec<Tensor> {
        self.groups()
            .iter()
            .flat_map(|g| g.params.iter().map(|p| p.tensor.clone()))
            .collect()
    }

    /// The optimiser's state as named CPU tensors (copies, safe to keep across later steps),
    /// ready for a safetensors checkpoint.
    fn state_dict(&self) -> Result<Vec<(String, Tensor)>>;

    /// Restores a state saved by `state_dict` of an optimiser of the same kind over parameters
    /// of the same shapes, in the same order. Fails without changing anything when an entry
    /// is missing, unexpected, or of the wrong shape.
    fn load_state_dict(&mut self, state: &[(String, Tensor)]) -> Result<()>;
}
