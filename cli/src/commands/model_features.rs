//! The model as a [`FeatureExtractor`]: eval-mode forward pass of the encoder, pooled feature
//! h per image (BEiT: LayerNorm of the mean patch token; ResNet: global average pool).
//!
//! Pending: `clce_models::Model` (branch `models`) has not landed on `main` with its forward
//! pass yet, so this build cannot run a model; `fewshot --embeddings FILE` and `analyze` work
//! on features computed elsewhere. Wiring it in means implementing `FeatureExtractor` for
//! `Model` here: `input_size` and `normalization` from its config, `extract` = tensor from the
//! batch, `no_grad` eval forward, the pooled output copied back to the CPU.
use std::path::Path;

use clce_cli::eval::features::FeatureExtractor;
use clce_engine::Device;

pub fn load(
    model: Option<&str>,
    weights: &Path,
    _device: &Device,
) -> Result<Box<dyn FeatureExtractor>, String> {
    Err(format!(
        "cannot run {} ({}) yet: this build of clce-cli has no model forward pass \
         (clce-models is still being integrated); compute features elsewhere and pass them \
         with --embeddings FILE",
        weights.display(),
        model.unwrap_or("model from the file")
    ))
}
