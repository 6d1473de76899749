//! `finetune --fewshot-eval`: after every epoch, the few-shot evaluation of `clce-cli fewshot`
//! (pooled features, L2-normalised, logistic regression per episode) with the network being
//! trained, on the few-shot split that goes with the training data (see [`source`]). The
//! episodes are seeded by their index, so every epoch is scored on the same episodes and the
//! curve follows the features, not the draw.
//!
//! The split is not always made of unseen classes: CIFAR-FS's val classes are among the 100
//! that a cifar100 run trains on, and the synthetic test split has the training classes. The
//! curve then measures how well the features separate known classes from a few examples.
use std::path::Path;

use clce_engine::Device;

use super::error::{Result, TrainError};
use super::eval::EvalViews;
use super::network::{Network, NetworkFeatures};
use crate::data::{DataSpec, Dataset};
use crate::eval::benchmarks::{Benchmark, FewShotSplit};
use crate::eval::confidence::MeanCi;
use crate::eval::features;
use crate::eval::fewshot::{self, FewShotConfig};
use crate::eval::images::{few_shot_split, EvalData, ImageSet};

/// The images and episodes of the per-epoch few-shot evaluation.
pub struct FewShotProbe {
    images: ImageSet,
    config: FewShotConfig,
}

/// The 5-way accuracies of one evaluation, as fractions, with their 95% intervals.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FewShotScores {
    pub one_shot: MeanCi,
    pub five_shot: MeanCi,
}

/// The few-shot images that go with a training set: CIFAR-100's CIFAR-FS val classes (their
/// train and test images, as `clce-cli fewshot --data cifar-fs --split val` takes them), an
/// image folder's PATH/val, the synthetic set's test split (the only one it has besides
/// train). CIFAR-10's 10 classes are too few for a split of their own.
pub fn source(spec: &DataSpec) -> Result<(EvalData, FewShotSplit)> {
    match spec {
        DataSpec::Cifar100 => Ok((EvalData::FewShot(Benchmark::CifarFs), FewShotSplit::Val)),
        DataSpec::ImageFolder(root) => {
            Ok((EvalData::ClassFolders(root.clone()), FewShotSplit::Val))
        }
        DataSpec::Synthetic(_) => Ok((EvalData::Standard(spec.clone()), FewShotSplit::Test)),
        DataSpec::Cifar10 => Err(TrainError::Invalid(
            "--fewshot-eval is not available for cifar10: its 10 classes are too few for a \
             few-shot split of their own. Use it with cifar100 (CIFAR-FS val classes), \
             imagefolder:PATH (PATH/val) or synthetic (its test split)"
                .into(),
        )),
    }
}

impl FewShotProbe {
    /// The probe for a run on `data` (opened from `spec`; images are drawn at `input_size`),
    /// `episodes` per shot setting. Fails now, not after the first epoch, if the episodes
    /// cannot be drawn from the images.
    pub fn open(
        spec: &DataSpec,
        data: &Dataset,
        data_dir: &Path,
        input_size: usize,
        episodes: usize,
    ) -> Result<FewShotProbe> {
        if episodes < 2 {
            return Err(TrainError::Invalid(format!(
                "--fewshot-eval {episodes}: a confidence interval needs at least 2 episodes"
            )));
        }
        let (eval_data, split) = source(spec)?;
        let images = match eval_data {
            // The training set is CIFAR-100 already in memory: no second copy.
            EvalData::FewShot(benchmark) => few_shot_split(data, benchmark, split)?,
            other => ImageSet::open(&other, split, data_dir, input_size)?,
        };
        let config = FewShotConfig {
            episodes,
            ..FewShotConfig::default()
        };
        fewshot::check(&images.labels, &images.class_names, &config).map_err(|e| {
            TrainError::Invalid(format!("--fewshot-eval on {}: {e}", images.description))
        })?;
        Ok(FewShotProbe { images, config })
    }

    /// What the probe evaluates on, for the run's header.
    pub fn describe(&self) -> String {
        format!(
            "few-shot eval after every epoch: {}; {} episodes each of {}-way 1-shot and 5-shot, \
             {} queries per class",
            self.images.description, self.config.episodes, self.config.ways, self.config.queries
        )
    }

    /// Images to embed (for a progress bar).
    pub fn images(&self) -> usize {
        self.images.len()
    }

    /// Embeds the images with `net` in eval mode and scores the episodes.
    /// `progress(done, total)` follows the images.
    pub fn run(
        &self,
        net: &dyn Network,
        views: &EvalViews,
        device: &Device,
        progress: impl FnMut(usize, usize),
    ) -> Result<FewShotScores> {
        let mut extractor = NetworkFeatures {
            net,
            device: device.clone(),
            input_size: views.image_size,
            normalization: views.norm,
        };
        let embeddings =
            features::compute(&self.images, &mut extractor, views.batch_size, progress)?;
        let results = fewshot::evaluate(&embeddings, &self.config)?;
        let fraction = |shots: usize| {
            let r = results
                .iter()
                .find(|r| r.shots == shots)
                .expect("the probe runs 1 and 5 shots");
            MeanCi {
                mean: r.accuracy.mean / 100.0,
                ci95: r.accuracy.ci95 / 100.0,
            }
        };
        Ok(FewShotScores {
            one_shot: fraction(1),
            five_shot: fraction(5),
        })
    }
}
