//! Train and eval modes, and running a residual block with or without activation
//! checkpointing.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clce_engine::{checkpoint, is_grad_enabled, DropPath, Result, SamplePlace, Tensor};

use crate::params::seed_for;

/// How a forward pass behaves. Train mode uses batch statistics in BatchNorm (and updates the
/// running ones) and applies stochastic depth with masks drawn from `seed`: pass a new seed
/// each step, and the same seed to repeat a step exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Eval,
    Train {
        seed: u64,
        /// Where the input's views sit in the step's batch (from 0 unless the batch runs in
        /// micro-batches or on several data-parallel ranks): each view draws its drop-path
        /// decisions by its place in the batch, so a batch gives the same masks in one piece
        /// or in slices.
        views: SamplePlace,
    },
}

impl Mode {
    /// Train mode for a whole batch.
    pub fn train(seed: u64) -> Mode {
        Mode::Train {
            seed,
            views: SamplePlace::from(0),
        }
    }

    /// Train mode for the views placed in the step's batch as `views` says (a data-parallel
    /// rank's share).
    pub fn train_at(seed: u64, views: SamplePlace) -> Mode {
        Mode::Train { seed, views }
    }

    pub fn is_train(self) -> bool {
        matches!(self, Mode::Train { .. })
    }

    /// The mode for views `start..` of this mode's input (a micro-batch of it).
    pub fn from_view(self, start: usize) -> Mode {
        match self {
            Mode::Train { seed, views } => Mode::Train {
                seed,
                views: views.from_sample(start),
            },
            Mode::Eval => Mode::Eval,
        }
    }

    /// Applies drop path with rate `p` to a residual branch in train mode; the mask's seed
    /// comes from the step seed and `site`, a name unique to the branch.
    pub fn drop_path(self, x: Tensor, p: f64, site: &str) -> Result<Tensor> {
        match self {
            Mode::Train { seed, views } if p > 0.0 => {
                x.drop_path_at(p, seed_for(seed, site), views)
            }
            _ => Ok(x),
        }
    }

    /// x + drop_path(gamma * branch) as `drop_path` would drop the branch, in one op.
    pub fn residual(
        self,
        x: &Tensor,
        branch: &Tensor,
        gamma: Option<&Tensor>,
        p: f64,
        site: &str,
    ) -> Result<Tensor> {
        let drop_path = match self {
            Mode::Train { seed, views } if p > 0.0 => Some(DropPath {
                p,
                seed: seed_for(seed, site),
                place: views,
            }),
            _ => None,
        };
        x.add_residual(branch, gamma, drop_path)
    }
}

/// A block that can be re-run in the backward pass.
pub trait Residual: Send + Sync + 'static {
    /// `update_stats`: whether BatchNorm in train mode may move its running statistics; false
    /// when the block is re-run for checkpointing, so that every batch counts once.
    fn forward(&self, x: &Tensor, mode: Mode, update_stats: bool) -> Result<Tensor>;
    /// The block's trainable tensors (their gradients are accumulated during the re-run).
    fn params(&self) -> &[Tensor];
}

/// Runs `block` on `x`. With `checkpointing` (and gradients being recorded) the block's
/// activations are not kept: the backward pass re-runs it, which gives identical gradients
/// because drop-path masks are seeded and BatchNorm uses the batch statistics it computed
/// the first time (the same batch).
pub fn run_block<B: Residual>(
    block: &Arc<B>,
    x: &Tensor,
    mode: Mode,
    checkpointing: bool,
) -> Result<Tensor> {
    if !checkpointing || !is_grad_enabled() {
        return block.forward(x, mode, true);
    }
    let first_run = AtomicBool::new(true);
    let b = block.clone();
    let f = Arc::new(move |xs: &[Tensor]| {
        let update_stats = first_run.swap(false, Ordering::Relaxed);
        b.forward(&xs[0], mode, update_stats)
    });
    checkpoint(std::slice::from_ref(x), block.params(), f)
}
