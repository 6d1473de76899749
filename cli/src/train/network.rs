//! What training and evaluation need from a model: a forward pass, named parameters, the
//! optimiser groups of the recipe, and a save. `clce_models::Model` is the model of the
//! product; tests drive the same code with small stand-ins.
use std::path::Path;

use clce_engine::optim::ParamGroup;
use clce_engine::Tensor;

use super::error::Result;

/// How a forward pass behaves: train mode uses batch statistics in BatchNorm and drop path
/// with masks drawn from `seed` (a fresh seed each step, derived from the run's seed and the
/// step number, so a resumed run draws the same masks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Eval,
    Train { seed: u64 },
}

/// What a forward pass gives: the pooled feature h [N, d], the logits [N, classes] and the
/// contrastive projection g(h) [N, proj_dim] (h itself with `--proj-dim 0`), not normalised.
pub struct Output {
    pub pooled: Tensor,
    pub logits: Tensor,
    pub projection: Tensor,
}

/// Which parameters the optimiser updates, and how.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupOptions {
    pub weight_decay: f64,
    /// BEiT's layer-wise lr decay; None: every parameter at the full lr.
    pub layer_decay: Option<f64>,
    /// Linear probe: only the classifier and projection heads train.
    pub heads_only: bool,
}

pub trait Network {
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Output>;

    /// Every trainable tensor under its checkpoint name.
    fn parameters(&self) -> Vec<(String, Tensor)>;

    /// The optimiser's parameter groups (METHOD.md's recipe: no weight decay on biases,
    /// norms, the cls token, relative position tables and layer-scale vectors).
    fn param_groups(&self, opts: &GroupOptions) -> Vec<ParamGroup>;

    /// Writes the model to `path` (timm naming for the models of the product).
    fn save(&self, path: &Path) -> Result<()>;
}
