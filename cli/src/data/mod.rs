//! The data pipeline of `clce-cli finetune`.
//!
//! 1. [`DataSpec`] names a data set (`--data cifar100 | cifar10 | imagefolder:PATH | synthetic`).
//! 2. [`Dataset::open`] finds it and gives a train and a test [`Split`] plus the class names;
//!    a split hands out images as 8-bit RGB ([`Image`]) with their labels.
//! 3. [`augment`] turns one image into a training view (the random crop, flip, colour jitter and
//!    grayscale of the method) or an evaluation view, as normalised CHW floats.
//! 4. [`Loader`] groups views into batches: a training batch holds two views of each of B images
//!    (views 0..B-1 first views, B..2B-1 second views), prepared on a background thread.
//!
//! Every random choice is keyed by (seed, epoch, image index, view), so runs repeat exactly
//! whatever the thread count.
use std::path::Path;
use std::sync::Arc;

pub mod augment;
mod cifar;
mod color;
mod error;
mod image;
mod imagefolder;
mod loader;
mod resize;
pub(crate) mod rng;
mod spec;
mod split;
mod synthetic;

pub use augment::{AugmentConfig, ColorJitter, Normalization};
pub use error::{DataError, Result};
pub use image::Image;
pub use loader::{Batch, Loader};
pub use spec::{DataSpec, SyntheticSpec};
pub use split::Split;

/// A data set: its two splits and the names of its classes (label `i` is `class_names[i]`).
pub struct Dataset {
    pub train: Arc<Split>,
    pub test: Arc<Split>,
    pub class_names: Vec<String>,
    /// Names of the superclasses behind [`Split::coarse_labels`] (CIFAR-100 only).
    pub coarse_class_names: Option<Vec<String>>,
}

impl Dataset {
    /// Opens the data set `spec` names. Files are looked up under `data_dir` (CIFAR) or the
    /// spec's own path (image folders); `input_size` is the model's input side, used as the
    /// side of the synthetic images.
    pub fn open(spec: &DataSpec, data_dir: &Path, input_size: usize) -> Result<Dataset> {
        match spec {
            DataSpec::Cifar100 => cifar::open(&cifar::CIFAR100, data_dir),
            DataSpec::Cifar10 => cifar::open(&cifar::CIFAR10, data_dir),
            DataSpec::ImageFolder(root) => imagefolder::open(root),
            DataSpec::Synthetic(s) => synthetic::open(s, input_size),
        }
    }

    /// The images under `dir/<class>/` as one split, labelled by the sorted class folders.
    pub fn open_class_folders(dir: &Path) -> Result<(Split, Vec<String>)> {
        imagefolder::open_class_folders(dir)
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Assembles a data set, checking that every label names a class.
    pub(crate) fn new(
        train: Split,
        test: Split,
        class_names: Vec<String>,
        coarse_class_names: Option<Vec<String>>,
    ) -> Result<Dataset> {
        for (name, split) in [("train", &train), ("test", &test)] {
            check_labels(name, split.labels(), class_names.len())?;
            if let (Some(labels), Some(names)) = (split.coarse_labels(), &coarse_class_names) {
                check_labels(name, labels, names.len())?;
            }
        }
        Ok(Dataset {
            train: Arc::new(train),
            test: Arc::new(test),
            class_names,
            coarse_class_names,
        })
    }
}

fn check_labels(split: &str, labels: &[usize], classes: usize) -> Result<()> {
    match labels.iter().position(|&l| l >= classes) {
        Some(i) => Err(DataError::Invalid(format!(
            "{split} example {i} has label {} but there are only {classes} classes",
            labels[i]
        ))),
        None => Ok(()),
    }
}
