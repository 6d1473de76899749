//! AdamW (Loshchilov & Hutter), exactly as torch.optim.AdamW with its defaults
//! (amsgrad=False, maximize=False): weight decay decoupled from the gradient, bias-corrected
//! moments.
use super::group::{check_groups, check_lr, checked_grad, describe, flat};
use super::guard::StepGuard;
use super::state::{saved_copy, step_tensor, SavedState};
use super::{cpu, gpu, Optimizer, ParamGroup};
use crate::memory::meta::MetaStorage;
use crate::{Device, Error, Result, Storage, Tensor};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamWConfig {
    /// torch's defaults, which are also the CLCE recipe's.
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Everything one update of one parameter needs besides its tensors (what a GPU kernel takes
/// as uniforms).
#[derive(Clone, Copy, Debug)]
pub(super) struct AdamWUpdate {
    /// The scheduled lr times the group's lr scale.
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// 1 on this parameter's first update (bias correction uses it). On a GPU it counts the
    /// steps loss scaling skipped too, which the kernel subtracts (the guard's count).
    pub step: u64,
    /// The gradient is multiplied by this first (the clip factor of `--clip-grad` over the
    /// loss scale; on a GPU the guard state's, read by the kernel instead).
    pub grad_scale: f64,
}

/// The running moments of one parameter, on the parameter's device and in its dtype.
struct Moments {
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// Updates applied so far, and steps skipped by loss scaling (the guard counts those);
    /// like torch, counted per parameter.
    step: u64,
}

impl Moments {
    fn zeros_like(p: &Tensor) -> Result<Self> {
        // Zero moments at step 0 are exactly torch's lazily created state, so allocating them
        // up front changes no result and makes every state_dict complete.
        Ok(Moments {
            exp_avg: p.zeros_like()?,
            exp_avg_sq: p.zeros_like()?,
            step: 0,
        })
    }
}

pub struct AdamW {
    groups: Vec<ParamGroup>,
    config: AdamWConfig,
    /// One entry per parameter, in `flat` order.
    moments: Vec<Moments>,
    /// For `step` without a guard on a GPU, whose kernel always reads one: a guard that
    /// never checks a step (scale 1, no bad step), made on first use.
    healthy: Option<StepGuard>,
}

impl AdamW {
    pub fn new(groups: Vec<ParamGroup>, config: AdamWConfig) -> Result<AdamW> {
        check_groups("adamw", &groups)?;
        let AdamWConfig { beta1, beta2, eps } = config;
        for (name, beta) in [("beta1", beta1), ("beta2", beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(Error::invalid(
                    "adamw",
                    format!("{name} = {beta} must be in [0, 1)"),
                ));
            }
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(Error::invalid(
                "adamw",
                format!("eps {eps} must be finite and >= 0"),
            ));
        }
        let moments = flat(&groups)
            .map(|(_, _, p)| Moments::zeros_like(&p.tensor))
            .collect::<Result<_>>()?;
        Ok(AdamW {
            groups,
            config,
            moments,
            healthy: None,
        })
    }

    pub fn config(&self) -> AdamWConfig {
        self.config
    }
}

impl AdamW {
    /// `step`, under the guard's verdict on this step (`guard.rs`): the gradients scaled by
    /// its factor (clip / loss scale), no change on a step skipped by loss scaling (which
    /// bias correction does not count), and no change at all once it has seen a non-finite
    /// step. On a GPU the kernels read the verdict; nothing is read back.
    pub fn step_guarded(&mut self, lr: f64, guard: &StepGuard) -> Result<()> {
        self.step_with(lr, guard)
    }

    fn step_with(&mut self, lr: f64, guard: &StepGuard) -> Result<()> {
        check_lr("adamw", lr)?;
        let state = guard.state();
        // On a GPU the kernel reads the factor, the skip and the skipped count itself.
        let (skip, grad_scale, skipped) = match state.device() {
            Device::Cpu => {
                let verdict = guard.host_verdict()?;
                if verdict.stopped {
                    return Ok(());
                }
                (verdict.skip, verdict.grad_scale, verdict.skipped)
            }
            Device::Gpu(_) | Device::Meta(_) => (false, 1.0, 0),
        };
        // Every gradient is checked before any parameter changes.
        let grads = flat(&self.groups)
            .map(|(i, _, p)| checked_grad("adamw", i, p))
            .collect::<Result<Vec<_>>>()?;
        let mut updates = Vec::with_capacity(self.moments.len());
        for ((i, group, p), grad) in flat(&self.groups).zip(grads) {
            let Some(grad) = grad else { continue };
            let moments = &mut self.moments[i];
            // A skipped step counts here as on a GPU, whose host cannot know it was skipped;
            // bias correction subtracts the guard's count of skipped steps.
            moments.step += 1;
            if skip {
                continue;
            }
            let update = AdamWUpdate {
                lr: lr * group.lr_scale,
                weight_decay: group.weight_decay,
                beta1: self.config.beta1,
                beta2: self.config.beta2,
                eps: self.config.eps,
                step: moments.step.saturating_sub(skipped).max(1),
                grad_scale,
            };
            updates.push((&p.tensor, grad, i, update));
        }
        let updates: Vec<_> = updates
            .into_iter()
            .map(|(p, g, i, u)| (p, g, &self.moments[i], u))
            .collect();
        match state.device() {
            Device::Gpu(_) => apply_gpu(&updates, state),
            _ => updates
                .iter()
                .try_for_each(|(p, g, m, u)| apply(p, g, m, state, u)),
        }
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, lr: f64) -> Result<()> {
        let Some(first) = self.groups.iter().flat_map(|g| &g.params).next() else {
            return check_lr("adamw", lr);
        };
        let device = first.tensor.device().clone();
        let healthy = match self.healthy.take() {
            Some(h) if h.state().device() == &device => h,
            _ => StepGuard::new(&device)?,
        };
        let result = self.step_with(lr, &healthy);
        self.healthy = Some(healthy);
        result
    }

    fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    fn state_dict(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(3 * self.moments.len());
        for (i, m) in self.moments.iter().enumerate() {
            out.push((format!("adamw.{i}.step"), step_tensor(m.step)?));
            out.push((format!("adamw.{i}.exp_avg"), saved_copy(&m.exp_avg)?));
            out.push((format!("adamw.{i}.exp_avg_sq"), saved_copy(&m.exp_avg_sq)?));
        }
        Ok(out)
    }

    fn load_state_dict(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let mut saved = SavedState::new(state)?;
        let mut loaded = Vec::with_capacity(self.moments.len());
        for (i, _, p) in flat(&self.groups) {
            let owner = describe(i, p);
            loaded.push(Moments {
                step: saved.take_step(&format!("adamw.{i}.step"), &owner)?,
                exp_avg: saved.take_like(&format!("adamw.{i}.exp_avg"), &p.tensor, &owner)?,
                exp_avg_sq: saved.take_like(&format!("adamw.{i}.exp_avg_sq"), &p.tensor, &owner)?,
            });
        }
        saved.finish()?;
        self.moments = loaded;
        Ok(())
    }
}

/// The updates of all parameters together, as few dispatches as the adapter allows.
fn apply_gpu(updates: &[(&Tensor, Tensor, &Moments, AdamWUpdate)], guard: &Tensor) -> Result<()> {
    let guard = guard.storage();
    let grads: Vec<_> = updates.iter().map(|(_, g, _, _)| g.storage()).collect();
    let mut params: Vec<_> = updates.iter().map(|(p, ..)| p.storage_mut()).collect();
    let mut exp_avgs: Vec<_> = updates
        .iter()
        .map(|(_, _, m, _)| m.exp_avg.storage_mut())
        .collect();
    let mut exp_avg_sqs: Vec<_> = updates
        .iter()
        .map(|(_, _, m, _)| m.exp_avg_sq.storage_mut())
        .collect();
    let Storage::Gpu(guard) = &*guard else {
        return Err(crate::storage::mixed_devices("adamw"));
    };
    let mut slots = Vec::with_capacity(updates.len());
    for ((((p, g), m), v), (.., u)) in params
        .iter_mut()
        .zip(&grads)
        .zip(exp_avgs.iter_mut())
        .zip(exp_avg_sqs.iter_mut())
        .zip(updates)
    {
        match (&mut **p, &**g, &mut **m, &mut **v) {
            (Storage::Gpu(p), Storage::Gpu(g), Storage::Gpu(m), Storage::Gpu(v)) => {
                slots.push(gpu::AdamWSlot { p, g, m, v, u: *u })
            }
            _ => return Err(crate::storage::mixed_devices("adamw")),
        }
    }
    gpu::adamw(&mut slots, guard)
}

/// One AdamW update of one parameter, in place, on the CPU (or the meta device).
fn apply(p: &Tensor, g: &Tensor, m: &Moments, guard: &Tensor, u: &AdamWUpdate) -> Result<()> {
    let grad = g.storage();
    let guard = guard.storage();
    let mut param = p.storage_mut();
    let mut exp_avg = m.exp_avg.storage_mut();
    let mut exp_avg_sq = m.exp_avg_sq.storage_mut();
    match (
        &mut *param,
        &*grad,
        &mut *exp_avg,
        &mut *exp_avg_sq,
        &*guard,
    ) {
        (Storage::Cpu(p), Storage::Cpu(g), Storage::Cpu(m), Storage::Cpu(v), Storage::Cpu(_)) => {
            cpu::adamw(p, g, m, v, u)
        }
        (Storage::Meta(p), Storage::Meta(_), Storage::Meta(m), Storage::Meta(v), _) => {
            MetaStorage::update_in_place(&mut [p, m, v], "adamw");
            Ok(())
        }
        _ => Err(crate::storage::mixed_devices("adamw")),
    }
}
