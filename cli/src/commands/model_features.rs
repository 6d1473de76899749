//! The model of a checkpoint as a [`FeatureExtractor`] (see [`NetworkFeatures`]): the
//! encoder's eval-mode pooled feature h per image, at the model's input size.
use std::path::Path;

use clce_cli::eval::features::FeatureExtractor;
use clce_cli::train::model::{self, Finetuned};
use clce_cli::train::network::NetworkFeatures;
use clce_engine::Device;
use clce_models::{LoadOptions, Model};

/// Loads `weights` (checked against the preset or architecture `model` names, if any) on
/// `device`, without its projection head: only the pooled feature is used.
pub fn load(
    model: Option<&str>,
    weights: &Path,
    device: &Device,
) -> Result<Box<dyn FeatureExtractor>, Box<dyn std::error::Error>> {
    let opts = LoadOptions {
        model: model.map(String::from),
        proj_dim: Some(0),
        device: device.clone(),
        ..LoadOptions::default()
    };
    let (model, report) = Model::load(weights, &opts)?;
    eprint!("{report}");
    Ok(Box::new(NetworkFeatures {
        input_size: model.config().image_size(),
        normalization: model::normalization(model.config()),
        net: Finetuned {
            model,
            frozen_backbone: false,
        },
        device: device.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use clce_engine::{no_grad, Tensor};
    use clce_models::Mode;
    use safetensors::SafeTensors;

    use super::*;

    fn f32s(file: &SafeTensors, name: &str) -> (Vec<f32>, Vec<usize>) {
        let t = file.tensor(name).unwrap();
        let values = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (values, t.shape().to_vec())
    }

    /// BEiT: the extractor gives timm's pooled features for the fixture's input (eval mode,
    /// rows in input order).
    #[test]
    fn beit_features_match_timm() {
        let dir = clce_engine::fixtures::dir().join("models");
        let weights = dir.join("beit_timm_tiny.safetensors");
        let mut extractor = load(Some("beit"), &weights, &Device::Cpu).unwrap();
        let bytes = std::fs::read(dir.join("beit_timm_tiny.io.safetensors")).unwrap();
        let io = SafeTensors::deserialize(&bytes).unwrap();
        let (input, shape) = f32s(&io, "input");
        let (expected, _) = f32s(&io, "eval.pooled");
        let got = extractor.extract(input, shape[0]).unwrap();
        assert_eq!(got.len(), expected.len());
        let diff: f32 = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).powi(2))
            .sum();
        let norm: f32 = expected.iter().map(|b| b * b).sum();
        assert!(
            (diff / norm).sqrt() < 1e-4,
            "relative error {}",
            (diff / norm).sqrt()
        );
    }

    /// ResNet (whose fixture's eval reference predates the running statistics stored in the
    /// file): the extractor gives the model's eval-mode pooled output, not the train-mode one
    /// with batch statistics, for inputs of any size.
    #[test]
    fn resnet_features_are_the_eval_mode_pooled_output() {
        let weights = clce_engine::fixtures::dir().join("models/resnet_timm_tiny.safetensors");
        let mut extractor = load(Some("resnet"), &weights, &Device::Cpu).unwrap();
        let (model, _) = Model::load(&weights, &LoadOptions::default()).unwrap();
        let (count, side) = (3, 40);
        let images: Vec<f32> = (0..count * 3 * side * side)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let x = Tensor::from_vec(images.clone(), vec![count, 3, side, side], &Device::Cpu).unwrap();
        let _no_tape = no_grad();
        let eval = model
            .forward(&x, Mode::Eval)
            .unwrap()
            .pooled
            .to_vec_f32()
            .unwrap();
        let train = model
            .forward(&x, Mode::train(0))
            .unwrap()
            .pooled
            .to_vec_f32()
            .unwrap();
        let got = extractor.extract(images, count).unwrap();
        assert_eq!(got, eval);
        assert_ne!(got, train);
    }
}
