//! What training and evaluation need from a model: a forward pass, named parameters, the
//! optimiser groups of the recipe, and a save. `clce_models::Model` is the model of the
//! product; tests drive the same code with small stand-ins.
use std::path::Path;

use clce_engine::optim::ParamGroup;
use clce_engine::{no_grad, Device, Tensor};

use super::error::Result;
use crate::data::Normalization;
use crate::eval::features::FeatureExtractor;

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

    /// Writes the model to `path` (timm naming for the models of the product, which timm
    /// loads strictly) and our projection head, when it has one, to `head`.
    fn save(&self, path: &Path, head: &Path) -> Result<()>;

    /// A copy with every parameter and buffer in f64 on the CPU: the reference the gradient
    /// check compares the device's f32 gradients with (see `train/gradcheck`).
    fn f64_reference(&self) -> Result<Box<dyn Network>>;

    /// What a train-mode forward changes besides its output (BatchNorm's running statistics
    /// and batch counters; nothing for BEiT or the tests' stand-ins).
    fn running_state(&self) -> RunningState {
        RunningState::default()
    }
}

/// The state a train-mode forward moves in place.
#[derive(Default)]
pub struct RunningState {
    /// Float statistics moved towards each batch's (BatchNorm's running mean and variance).
    pub statistics: Vec<Tensor>,
    /// Counters advanced once per batch (BatchNorm's `num_batches_tracked`).
    pub counters: Vec<Tensor>,
}

/// So that a borrowed network (the trainer's `&dyn Network`) can be wrapped like an owned one.
impl<N: Network + ?Sized> Network for &N {
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Output> {
        (**self).forward(x, mode)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        (**self).parameters()
    }

    fn param_groups(&self, opts: &GroupOptions) -> Vec<ParamGroup> {
        (**self).param_groups(opts)
    }

    fn save(&self, path: &Path, head: &Path) -> Result<()> {
        (**self).save(path, head)
    }

    fn f64_reference(&self) -> Result<Box<dyn Network>> {
        (**self).f64_reference()
    }

    fn running_state(&self) -> RunningState {
        (**self).running_state()
    }
}

/// A network as a [`FeatureExtractor`]: the eval-mode forward pass (no dropout or drop path,
/// BatchNorm on its running statistics, no gradient tape) and its pooled feature h per image
/// (BEiT: LayerNorm of the mean patch token; ResNet: global average pool). `clce-cli fewshot`
/// and `embed` use it on a loaded checkpoint, `finetune --fewshot-eval` on the model in
/// training.
pub struct NetworkFeatures<N> {
    pub net: N,
    pub device: Device,
    /// The side of the square input the evaluation views are made at.
    pub input_size: usize,
    pub normalization: Normalization,
}

impl<N: Network> FeatureExtractor for NetworkFeatures<N> {
    fn input_size(&self) -> usize {
        self.input_size
    }

    fn normalization(&self) -> Normalization {
        self.normalization
    }

    fn extract(&mut self, images: Vec<f32>, count: usize) -> std::result::Result<Vec<f32>, String> {
        // Square images; the side follows from the batch (ResNets take any size).
        let side = ((images.len() / (3 * count.max(1))) as f64).sqrt().round() as usize;
        if count == 0 || images.len() != count * 3 * side * side {
            return Err(format!(
                "{} values are not {count} square RGB images",
                images.len()
            ));
        }
        let x = Tensor::from_vec(images, vec![count, 3, side, side], &self.device)
            .map_err(|e| e.to_string())?;
        let _no_tape = no_grad();
        let out = self
            .net
            .forward(&x, Mode::Eval)
            .map_err(|e| e.to_string())?;
        out.pooled.to_vec_f32().map_err(|e| e.to_string())
    }
}
