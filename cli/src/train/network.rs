//! What training and evaluation need from a model: a forward pass, named parameters, the
//! optimiser groups of the recipe, and a save. `clce_models::Model` is the model of the
//! product; tests drive the same code with small stand-ins.
use std::path::Path;

use clce_engine::optim::ParamGroup;
use clce_engine::Tensor;

use super::error::Result;

/// Train or eval mode (drop path and BatchNorm statistics), and the forward pass's outputs
/// (pooled feature h, logits, contrastive projection g(h), not normalised), as the models
/// crate defines them.
pub use clce_models::{Mode, Output};

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
