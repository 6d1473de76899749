//! The learning-rate schedule of the fine-tuning recipe: linear warm-up, then cosine decay.

/// Linear warm-up to `base_lr` over `warmup_steps` optimiser steps, then a half cosine from
/// `base_lr` down to `min_lr` at `total_steps`, and `min_lr` from there on.
///
/// `step` counts optimiser steps from 0 (the lr of the first update is `lr_at(0)`).
/// Warm-up uses timm's per-step convention shifted by one, `base_lr * (step + 1) /
/// warmup_steps`, so the first update already moves (lr = base/warmup rather than 0) and the
/// last warm-up step reaches `base_lr` exactly. The cosine then restarts from `base_lr`:
/// `min + (base - min) * (1 + cos(pi * (step - warmup) / (total - warmup))) / 2`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WarmupCosine {
    pub base_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub min_lr: f64,
}

impl WarmupCosine {
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        if step >= self.total_steps {
            return self.min_lr;
        }
        // Here warmup_steps <= step < total_steps, so the span is at least 1.
        let progress =
            (step - self.warmup_steps) as f64 / (self.total_steps - self.warmup_steps) as f64;
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.min_lr + (self.base_lr - self.min_lr) * cosine
    }
}
