//! From an image to the float tensor the model sees.
//!
//! Training view (METHOD.md, step 1; torchvision's transforms in this order):
//! RandomResizedCrop(size, scale 0.2-1, ratio 3/4-4/3) -> RandomHorizontalFlip(0.5) ->
//! RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), p = 0.8) -> RandomGrayscale(0.2) -> normalise.
//! The photometric steps work on floats in [0, 1] like torchvision's tensor transforms (PIL
//! would round to 8 bits after each step).
//!
//! Evaluation view: the largest centred square, resized to size x size, normalised (for the
//! square images of CIFAR this is a plain resize).
//!
//! Output is CHW: channel planes of `size * size` floats, `(x - mean[c]) / std[c]`.
use rand::Rng;

use super::color;
pub use super::color::ColorJitter;
use super::error::{DataError, Result};
use super::image::Image;
use super::resize::resized_crop;
pub use super::resize::Crop;
use super::rng::{stream, Purpose};

/// Per-channel mean and standard deviation the model was trained with
/// (BEiT: 0.5 and 0.5; ResNet: ImageNet's (0.485, 0.456, 0.406) and (0.229, 0.224, 0.225)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// The random transforms of a training view and their strengths.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AugmentConfig {
    /// Side of the square output, the model's input size.
    pub size: usize,
    pub norm: Normalization,
    /// Range of the crop's area as a fraction of the image.
    pub crop_scale: (f64, f64),
    /// Range of the crop's width / height.
    pub crop_ratio: (f64, f64),
    pub flip_p: f64,
    pub jitter: ColorJitter,
    pub jitter_p: f64,
    pub grayscale_p: f64,
}

impl AugmentConfig {
    /// The augmentation of the CLCE paper for a model with input `size` and normalisation `norm`.
    pub fn clce(size: usize, norm: Normalization) -> AugmentConfig {
        AugmentConfig {
            size,
            norm,
            crop_scale: (0.2, 1.0),
            crop_ratio: (3.0 / 4.0, 4.0 / 3.0),
            flip_p: 0.5,
            jitter: ColorJitter {
                brightness: 0.4,
                contrast: 0.4,
                saturation: 0.4,
                hue: 0.1,
            },
            jitter_p: 0.8,
            grayscale_p: 0.2,
        }
    }

    /// Catches settings that would make the random draws meaningless (or panic).
    pub fn validate(&self) -> Result<()> {
        let probability = |p: f64| (0.0..=1.0).contains(&p);
        let jitter = &self.jitter;
        let ok = self.size > 0
            && 0.0 < self.crop_scale.0
            && self.crop_scale.0 <= self.crop_scale.1
            && 0.0 < self.crop_ratio.0
            && self.crop_ratio.0 <= self.crop_ratio.1
            && probability(self.flip_p)
            && probability(self.jitter_p)
            && probability(self.grayscale_p)
            && (0.0..=0.5).contains(&jitter.hue)
            && [jitter.brightness, jitter.contrast, jitter.saturation]
                .iter()
                .all(|&x| x >= 0.0)
            && self.norm.std.iter().all(|&s| s > 0.0);
        if ok {
            Ok(())
        } else {
            Err(DataError::Invalid(format!(
                "augmentation settings out of range: {self:?}"
            )))
        }
    }
}

/// What one training view's randomness is keyed by. The same key always gives the same view,
/// whichever thread computes it and whatever else is in the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewKey {
    pub seed: u64,
    pub epoch: u64,
    /// Index of the image in its split.
    pub index: usize,
    /// 0 for the first view of the image, 1 for the second.
    pub view: usize,
}

/// A random training view of `image`, CHW, `3 * size * size` floats.
pub fn train_view(image: &Image, cfg: &AugmentConfig, key: ViewKey) -> Vec<f32> {
    let mut out = vec![0.0; 3 * cfg.size * cfg.size];
    train_view_into(image, cfg, key, &mut out);
    out
}

/// [`train_view`] written into `out` (`3 * size * size` floats).
pub fn train_view_into(image: &Image, cfg: &AugmentConfig, key: ViewKey, out: &mut [f32]) {
    let indices = [key.epoch, key.index as u64, key.view as u64];
    let mut rng = stream(key.seed, Purpose::Augment, &indices);
    // Every coin and factor is drawn whether or not it is used, so that changing one
    // probability leaves the other decisions of the same key unchanged.
    let crop = random_resized_crop_params(image, cfg.crop_scale, cfg.crop_ratio, &mut rng);
    let flip = rng.random_bool(cfg.flip_p);
    let jitter = rng.random_bool(cfg.jitter_p);
    let mut jitter_rng = stream(rng.random(), Purpose::Augment, &[]);
    let gray = rng.random_bool(cfg.grayscale_p);

    let mut pixels = resized_crop(image, crop, cfg.size, cfg.size);
    if flip {
        mirror(&mut pixels, cfg.size);
    }
    if jitter {
        cfg.jitter.apply(&mut pixels, &mut jitter_rng);
    }
    if gray {
        color::to_grayscale(&mut pixels);
    }
    normalize_into(&pixels, &cfg.norm, out);
}

/// The evaluation view of `image`: centred square, resized to `size`, normalised; CHW.
pub fn eval_view(image: &Image, size: usize, norm: &Normalization) -> Vec<f32> {
    let mut out = vec![0.0; 3 * size * size];
    eval_view_into(image, size, norm, &mut out);
    out
}

/// [`eval_view`] written into `out` (`3 * size * size` floats).
pub fn eval_view_into(image: &Image, size: usize, norm: &Normalization, out: &mut [f32]) {
    let side = image.width.min(image.height);
    let crop = Crop {
        top: (image.height - side) / 2,
        left: (image.width - side) / 2,
        height: side,
        width: side,
    };
    normalize_into(&resized_crop(image, crop, size, size), norm, out);
}

/// torchvision's `RandomResizedCrop.get_params`: up to 10 tries at a crop of random area and
/// aspect ratio (log-uniform) that fits, placed uniformly; else a centred crop with the
/// image's ratio clamped into range. Python's `round` rounds halves to even.
pub fn random_resized_crop_params(
    image: &Image,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut impl Rng,
) -> Crop {
    let (width, height) = (image.width, image.height);
    let area = (width * height) as f64;
    let log_ratio = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * rng.random_range(scale.0..=scale.1);
        let aspect = rng.random_range(log_ratio.0..=log_ratio.1).exp();
        let w = (target_area * aspect).sqrt().round_ties_even() as usize;
        let h = (target_area / aspect).sqrt().round_ties_even() as usize;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return Crop {
                top,
                left,
                height: h,
                width: w,
            };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio.0 {
        (
            width,
            ((width as f64 / ratio.0).round_ties_even() as usize).clamp(1, height),
        )
    } else if in_ratio > ratio.1 {
        (
            ((height as f64 * ratio.1).round_ties_even() as usize).clamp(1, width),
            height,
        )
    } else {
        (width, height)
    };
    Crop {
        top: (height - h) / 2,
        left: (width - w) / 2,
        height: h,
        width: w,
    }
}

/// Reverses every row of an HWC image of `size` columns.
fn mirror(pixels: &mut [f32], size: usize) {
    for row in pixels.chunks_exact_mut(size * 3) {
        for x in 0..size / 2 {
            for c in 0..3 {
                row.swap(x * 3 + c, (size - 1 - x) * 3 + c);
            }
        }
    }
}

/// HWC floats in [0, 1] -> normalised CHW.
fn normalize_into(pixels: &[f32], norm: &Normalization, out: &mut [f32]) {
    let plane = pixels.len() / 3;
    assert_eq!(
        out.len(),
        pixels.len(),
        "output buffer must hold 3 * size * size floats"
    );
    for c in 0..3 {
        let (mean, inv_std) = (norm.mean[c], 1.0 / norm.std[c]);
        for (o, p) in out[c * plane..(c + 1) * plane]
            .iter_mut()
            .zip(pixels.chunks_exact(3))
        {
            *o = (p[c] - mean) * inv_std;
        }
    }
}
