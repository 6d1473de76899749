//! Stochastic gradient descent with momentum, as torch.optim.SGD with dampening 0: weight
//! decay is added to the gradient (coupled), optionally Nesterov momentum.
use super::group::{check_groups, check_lr, checked_grad, describe, flat};
use super::state::{saved_copy, SavedState};
use super::{cpu, gpu, Optimizer, ParamGroup};
use crate::memory::meta::MetaStorage;
use crate::{Error, Result, Storage, Tensor};

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SgdConfig {
    /// 0 (torch's default) keeps no state; ResNet recipes use 0.9.
    pub momentum: f64,
    pub nesterov: bool,
}

/// Everything one update of one parameter needs besides its tensors.
#[derive(Clone, Copy, Debug)]
pub(super) struct SgdUpdate {
    /// The scheduled lr times the group's lr scale.
    pub lr: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub nesterov: bool,
}

pub struct Sgd {
    groups: Vec<ParamGroup>,
    config: SgdConfig,
    /// One buffer per parameter in `flat` order; empty when momentum is 0.
    momentum_buffers: Vec<Tensor>,
}

impl Sgd {
    pub fn new(groups: Vec<ParamGroup>, config: SgdConfig) -> Result<Sgd> {
        check_groups("sgd", &groups)?;
        if !(config.momentum.is_finite() && config.momentum >= 0.0) {
            return Err(Error::invalid(
                "sgd",
                format!("momentum {} must be finite and >= 0", config.momentum),
            ));
        }
        if config.nesterov && config.momentum == 0.0 {
            return Err(Error::invalid(
                "sgd",
                "Nesterov momentum needs a momentum > 0",
            ));
        }
        // With dampening 0, a zero buffer gives torch's first step exactly (buf = 0·μ + d = d).
        let momentum_buffers = if config.momentum == 0.0 {
            Vec::new()
        } else {
            flat(&groups)
                .map(|(_, _, p)| p.tensor.zeros_like())
                .collect::<Result<_>>()?
        };
        Ok(Sgd {
            groups,
            config,
            momentum_buffers,
        })
    }

    pub fn config(&self) -> SgdConfig {
        self.config
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, lr: f64) -> Result<()> {
        check_lr("sgd", lr)?;
        let grads = flat(&self.groups)
            .map(|(i, _, p)| checked_grad("sgd", i, p))
            .collect::<Result<Vec<_>>>()?;
        for ((i, group, p), grad) in flat(&self.groups).zip(grads) {
            let Some(grad) = grad else { continue };
            let update = SgdUpdate {
                lr: lr * group.lr_scale,
                weight_decay: group.weight_decay,
                momentum: self.config.momentum,
                nesterov: self.config.nesterov,
            };
            apply(&p.tensor, &grad, self.momentum_buffers.get(i), &update)?;
        }
        Ok(())
    }

    fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    fn state_dict(&self) -> Result<Vec<(String, Tensor)>> {
        self.momentum_buffers
            .iter()
            .enumerate()
            .map(|(i, b)| Ok((format!("sgd.{i}.momentum_buffer"), saved_copy(b)?)))
            .collect()
    }

    fn load_state_dict(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let mut saved = SavedState::new(state)?;
        let mut loaded = Vec::with_capacity(self.momentum_buffers.len());
        if self.config.momentum != 0.0 {
            for (i, _, p) in flat(&self.groups) {
                let key = format!("sgd.{i}.momentum_buffer");
                loaded.push(saved.take_like(&key, &p.tensor, &describe(i, p))?);
            }
        }
        saved.finish()?;
        self.momentum_buffers = loaded;
        Ok(())
    }
}

/// One SGD update of one parameter (and its momentum buffer), in place, on its device.
fn apply(p: &Tensor, g: &Tensor, buffer: Option<&Tensor>, u: &SgdUpdate) -> Result<()> {
    let grad = g.storage();
    let mut param = p.storage_mut();
    let mut buffer = buffer.map(|b| b.storage_mut());
    match (&mut *param, &*grad, buffer.as_deref_mut()) {
        (Storage::Cpu(p), Storage::Cpu(g), None) => cpu::sgd(p, g, None, u),
        (Storage::Cpu(p), Storage::Cpu(g), Some(Storage::Cpu(b))) => cpu::sgd(p, g, Some(b), u),
        (Storage::Gpu(p), Storage::Gpu(g), None) => gpu::sgd(p, g, None, u),
        (Storage::Gpu(p), Storage::Gpu(g), Some(Storage::Gpu(b))) => gpu::sgd(p, g, Some(b), u),
        (Storage::Meta(p), Storage::Meta(_), None) => {
            MetaStorage::update_in_place(&mut [p], "sgd");
            Ok(())
        }
        (Storage::Meta(p), Storage::Meta(_), Some(Storage::Meta(b))) => {
            MetaStorage::update_in_place(&mut [p, b], "sgd");
            Ok(())
        }
        _ => Err(crate::storage::mixed_devices("sgd")),
    }
}
