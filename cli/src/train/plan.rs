//! The memory of one training step, planned without running it: `clce-cli plan` and
//! `finetune --memory-budget`.
//!
//! The plan runs the real step (`trainer::StepCore`: the model's forward pass in train mode,
//! the objective, backward, the gradient norm and AdamW) on the meta device, whose tensors
//! have shapes and no values and whose allocator counts every allocation and release the
//! way the planned-for device would (exact bytes on the CPU; a GPU pool's size classes and
//! binding limit). So the plan follows the code: a change to a model, an op's saved state
//! or the tape shows up in the plan by itself.
use clce_engine::memory::meta::{Breakdown, Category, LargestBuffer};
use clce_engine::optim::{AdamW, AdamWConfig, Optimizer, StepGuard};
use clce_engine::{AllocatorModel, DType, Device, MetaDevice, Tensor};

use super::config::{Precision, TrainConfig};
use super::error::{Result, TrainError};
use super::model::{objective_for, random_model, Finetuned};
use super::network::{GroupOptions, Network};
use super::trainer::{step_guard, step_mode, StepCore, StepDone};

/// The peak memory of one step and what it is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The largest tensor memory during the step (weights and optimiser state included).
    pub peak_bytes: u64,
    /// Live bytes by kind at the peak.
    pub weights_bytes: u64,
    pub optimizer_bytes: u64,
    /// Parameter gradients already accumulated at the peak.
    pub gradients_bytes: u64,
    /// Activations, saved state, temporaries and gradients in flight at the peak.
    pub activations_bytes: u64,
    /// The largest single buffer the step asks for, and the op asking.
    pub largest_buffer: LargestBuffer,
    /// A GPU's largest storage binding (None when planning for the CPU).
    pub binding_limit: Option<u64>,
    /// Live bytes at the peak by the op that allocated them, largest first.
    pub ops_at_peak: Vec<(&'static str, u64)>,
}

impl Plan {
    /// Whether the step needs a buffer the device cannot bind.
    pub fn exceeds_binding_limit(&self) -> bool {
        self.binding_limit
            .is_some_and(|limit| self.largest_buffer.bytes > limit)
    }

    /// Whether the step fits `budget` bytes on its device.
    pub fn fits(&self, budget: u64) -> bool {
        self.peak_bytes <= budget && !self.exceeds_binding_limit()
    }
}

/// How `device` allocates, for planning on it: the CPU, or a GPU's pool with its binding limit.
pub fn allocator_of(device: &Device) -> AllocatorModel {
    match device {
        Device::Gpu(g) => AllocatorModel::Gpu {
            binding_limit: g.limits().max_storage_buffer_binding_size,
            shader_f16: g.has_shader_f16(),
        },
        Device::Meta(m) => m.model(),
        Device::Cpu => AllocatorModel::Cpu,
    }
}

/// The peak memory of one training step of `cfg` (its model, batch, image size, objective,
/// checkpointing and frozen backbone) on a device that allocates like `target`.
pub fn plan(cfg: &TrainConfig, target: AllocatorModel) -> Result<Plan> {
    let meta = MetaDevice::new(target);
    let device = Device::Meta(meta.clone());

    let mut rig = Rig::new(cfg, &device)?;
    meta.set_category(Category::Activations);
    meta.reset_peak_memory();
    let (b, s) = (cfg.batch_size, cfg.image_size);
    let x = Tensor::zeros([2 * b, 3, s, s], DType::F32, &device)?;
    rig.step(cfg, 0, &x)?;

    let at_peak: Breakdown = meta.breakdown_at_peak();
    let part = |c: Category| at_peak[c.index()];
    Ok(Plan {
        peak_bytes: meta.memory_stats().peak_live_bytes,
        weights_bytes: part(Category::Weights),
        optimizer_bytes: part(Category::OptimizerState),
        gradients_bytes: part(Category::Gradients),
        activations_bytes: part(Category::Activations),
        largest_buffer: meta.largest_buffer(),
        ops_at_peak: meta.ops_at_peak(),
        binding_limit: match target {
            AllocatorModel::Gpu { binding_limit, .. } => Some(binding_limit),
            AllocatorModel::Cpu => None,
        },
    })
}

/// What a training step on random input needs besides its batch (for `plan`, `bench` and
/// their tests): the run's model with random weights and AdamW over its parameter groups.
pub struct Rig {
    pub net: Finetuned,
    pub opt: AdamW,
    pub trained: Vec<Tensor>,
    pub guard: StepGuard,
}

impl Rig {
    pub fn new(cfg: &TrainConfig, device: &Device) -> Result<Rig> {
        let meta = match device {
            Device::Meta(m) => Some(m),
            _ => None,
        };
        meta.inspect(|m| m.set_category(Category::Weights));
        let net = Finetuned {
            model: random_model(cfg, device)?,
            frozen_backbone: cfg.freeze_backbone,
        };
        meta.inspect(|m| m.set_category(Category::OptimizerState));
        let groups = net.param_groups(&GroupOptions {
            weight_decay: cfg.weight_decay,
            layer_decay: cfg.layer_decay,
            heads_only: cfg.freeze_backbone,
        });
        let opt = AdamW::new(groups, AdamWConfig::default())?;
        let trained = opt.params();
        // bench times f16 steps with their loss scaling; plan's meta device keeps no scale.
        let guard = step_guard(cfg, device, None)?;
        Ok(Rig {
            net,
            opt,
            trained,
            guard,
        })
    }

    /// Step number `step` of `cfg` on the views `x` of `cfg.batch_size` images, labelled as
    /// the loader lays views out (view i and view i + B are one image). Nothing is read back:
    /// `self.guard` says whether the steps so far were finite.
    pub fn step(&mut self, cfg: &TrainConfig, step: usize, x: &Tensor) -> Result<StepDone> {
        let b = cfg.batch_size;
        let labels: Vec<usize> = (0..2 * b).map(|i| (i % b) % cfg.num_classes).collect();
        let objective = objective_for(cfg)?;
        let core = StepCore {
            net: &self.net,
            objective: &objective,
            mode: step_mode(cfg, step),
            micro_batch: cfg.micro_batch,
            precision: cfg.precision,
            clip_grad: cfg.clip_grad,
            lr: cfg.lr,
            distributed: None,
        };
        core.run(
            &mut self.opt,
            &self.trained,
            &mut self.guard,
            step + 1,
            x,
            &labels,
        )
    }
}

/// The settings that trade time (or precision) for memory: `--precision`,
/// `--checkpoint-activations` and `--micro-batch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemorySettings {
    pub precision: Precision,
    pub checkpoint_activations: bool,
    pub micro_batch: Option<usize>,
}

impl MemorySettings {
    pub fn of(cfg: &TrainConfig) -> MemorySettings {
        MemorySettings {
            precision: cfg.precision,
            checkpoint_activations: cfg.checkpoint_activations,
            micro_batch: cfg.micro_batch,
        }
    }

    pub fn apply(self, cfg: &TrainConfig) -> TrainConfig {
        TrainConfig {
            precision: self.precision,
            checkpoint_activations: self.checkpoint_activations,
            micro_batch: self.micro_batch,
            ..cfg.clone()
        }
    }

    /// The flags that give these settings.
    pub fn flags(&self) -> String {
        let mut flags = Vec::new();
        if self.precision == Precision::F16 {
            flags.push("--precision f16".to_string());
        }
        if self.checkpoint_activations {
            flags.push("--checkpoint-activations".into());
        }
        if let Some(k) = self.micro_batch {
            flags.push(format!("--micro-batch {k}"));
        }
        flags.join(" ")
    }
}

impl std::fmt::Display for MemorySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Always named: the default depends on the device.
        let mut parts = vec![format!("{} activations", self.precision.name())];
        parts.push(
            if self.checkpoint_activations {
                "activation checkpointing"
            } else {
                "no checkpointing"
            }
            .into(),
        );
        if let Some(k) = self.micro_batch {
            parts.push(format!("micro-batches of {k} views"));
        }
        write!(f, "{}", parts.join(", "))
    }
}

/// What `--memory-budget` settled on.
#[derive(Clone, Debug)]
pub struct BudgetChoice {
    pub settings: MemorySettings,
    pub plan: Plan,
    /// Settings tried before, cheapest first, that did not fit.
    pub rejected: Vec<(MemorySettings, Plan)>,
}

/// The cheapest settings of `cfg` whose planned step fits `budget` bytes on `target`. In
/// order of the time they cost: as given; with f16 activations (unless `--precision` was
/// given: `vary_precision` false); with activation checkpointing (one more forward pass),
/// then both; then, unless `--micro-batch` was given, micro-batches (one more forward pass)
/// over those settings in the same order, each with the largest K (a power of two) that
/// fits. When nothing fits, not even one view at a time, the error says what the fixed
/// part needs.
pub fn fit_budget(
    cfg: &TrainConfig,
    budget: u64,
    target: AllocatorModel,
    vary_precision: bool,
) -> Result<BudgetChoice> {
    let given = MemorySettings::of(cfg);
    let mut rejected = Vec::new();
    let mut plain = vec![given];
    let mut consider = |s: MemorySettings| {
        if !plain.contains(&s) {
            plain.push(s)
        }
    };
    // f16 is the only precision cheaper than one given (f32 never saves memory).
    let precisions: &[Precision] = if vary_precision {
        &[Precision::F16]
    } else {
        &[]
    };
    for checkpoint_activations in [given.checkpoint_activations, true] {
        consider(MemorySettings {
            checkpoint_activations,
            ..given
        });
        for &precision in precisions {
            consider(MemorySettings {
                precision,
                checkpoint_activations,
                ..given
            });
        }
    }
    for &settings in &plain {
        let plan = plan(&settings.apply(cfg), target)?;
        if plan.fits(budget) {
            return Ok(BudgetChoice {
                settings,
                plan,
                rejected,
            });
        }
        rejected.push((settings, plan));
    }
    if given.micro_batch.is_none() {
        let views = 2 * cfg.batch_size;
        // Powers of two below the batch's views, largest first: fewer, larger chunks run
        // faster, and the peak only grows with K.
        let sizes: Vec<usize> = (0..usize::BITS)
            .map(|e| 1usize << e)
            .take_while(|&k| k < views)
            .collect();
        for &settings in &plain {
            let mut above = None;
            for &k in sizes.iter().rev() {
                let tried = MemorySettings {
                    micro_batch: Some(k),
                    ..settings
                };
                let plan = plan(&tried.apply(cfg), target)?;
                if plan.fits(budget) {
                    rejected.extend(above);
                    return Ok(BudgetChoice {
                        settings: tried,
                        plan,
                        rejected,
                    });
                }
                above = Some((tried, plan));
            }
            rejected.extend(above);
        }
    }
    let (settings, best) = rejected.last().expect("at least one setting was tried");
    let fixed = best.weights_bytes + best.optimizer_bytes;
    Err(TrainError::Invalid(format!(
        "--memory-budget {}: batch {} needs {} even with {settings}{}; the weights and AdamW \
         state alone take {}. {}",
        super::progress::format_bytes(budget),
        cfg.batch_size,
        super::progress::format_bytes(best.peak_bytes),
        if best.exceeds_binding_limit() {
            format!(
                " and a buffer of {} ({}) above the device's binding limit",
                super::progress::format_bytes(best.largest_buffer.bytes),
                best.largest_buffer.op
            )
        } else {
            String::new()
        },
        super::progress::format_bytes(fixed),
        match largest_fitting_batch(&settings.apply(cfg), budget, target)? {
            Some(b) => format!(
                "With these settings the largest batch that fits is {b} (--batch-size {b})."
            ),
            None => "Not even one image fits: lower --image-size or use a smaller model.".into(),
        }
    )))
}

/// The largest batch size below `cfg.batch_size` whose step fits (bisection: the peak grows
/// with the batch).
fn largest_fitting_batch(
    cfg: &TrainConfig,
    budget: u64,
    target: AllocatorModel,
) -> Result<Option<usize>> {
    let fits = |b: usize| -> Result<bool> {
        let tried = TrainConfig {
            batch_size: b,
            ..cfg.clone()
        };
        Ok(plan(&tried, target)?.fits(budget))
    };
    if !fits(1)? {
        return Ok(None);
    }
    let (mut lo, mut hi) = (1, cfg.batch_size);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(Some(lo))
}
