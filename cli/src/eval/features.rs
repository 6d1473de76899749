//! Turning images into features: every image of a set goes through the evaluation view
//! (resize, centre crop, normalise; no augmentation) and a [`FeatureExtractor`] (the model's
//! encoder and pooling), batch by batch, once.
use rayon::prelude::*;

use super::embeddings::Embeddings;
use super::error::{EvalError, Result};
use super::images::ImageSet;
use crate::data::augment::{eval_view_into, Normalization};
use crate::data::Image;

/// Images in, pooled features out. The real one runs the encoder; tests use fakes.
pub trait FeatureExtractor {
    /// Side of the square input the extractor expects.
    fn input_size(&self) -> usize;
    /// Per-channel normalisation of its input.
    fn normalization(&self) -> Normalization;
    /// The features of `count` images given as `[count, 3, S, S]` floats (NCHW), returned as
    /// `count × d` floats, row-major.
    fn extract(&mut self, images: Vec<f32>, count: usize) -> std::result::Result<Vec<f32>, String>;
}

/// The features of every image of `set`, `batch_size` images at a time. `progress(done, total)`
/// is called after every batch.
pub fn compute(
    set: &ImageSet,
    extractor: &mut dyn FeatureExtractor,
    batch_size: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Embeddings> {
    if batch_size == 0 {
        return Err(EvalError::Invalid(
            "the batch size must be at least 1".into(),
        ));
    }
    let size = extractor.input_size();
    let norm = extractor.normalization();
    let view_len = 3 * size * size;
    let mut values = Vec::new();
    let mut dim = None;
    let indices: Vec<usize> = (0..set.len()).collect();
    for batch in indices.chunks(batch_size) {
        let decoded: Vec<Image> = batch
            .par_iter()
            .map(|&i| set.image(i))
            .collect::<Result<_>>()?;
        let mut pixels = vec![0.0f32; batch.len() * view_len];
        pixels
            .par_chunks_mut(view_len)
            .zip(&decoded)
            .for_each(|(out, image)| eval_view_into(image, size, &norm, out));
        let features = extractor
            .extract(pixels, batch.len())
            .map_err(EvalError::Invalid)?;
        let d = features.len() / batch.len();
        if d == 0 || features.len() != d * batch.len() || dim.is_some_and(|prev| prev != d) {
            return Err(EvalError::Invalid(format!(
                "the feature extractor returned {} values for {} images{}",
                features.len(),
                batch.len(),
                dim.map_or(String::new(), |d| format!(
                    " (earlier batches: {d} per image)"
                ))
            )));
        }
        dim = Some(d);
        values.extend(features);
        progress(batch.last().map_or(0, |&i| i + 1), set.len());
    }
    Embeddings::new(
        values,
        dim.unwrap_or(1),
        set.labels.clone(),
        set.class_names.clone(),
    )
}
