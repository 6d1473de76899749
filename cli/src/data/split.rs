//! One split (train or test) of a data set: labels held in memory, images fetched by index.
use std::path::PathBuf;

use super::error::{DataError, Result};
use super::image::Image;
use super::synthetic::Renderer;

/// The images and labels of one split. Images are produced on demand by [`Split::image`]:
/// small data sets keep their pixels in memory, image folders decode a file per call and the
/// synthetic set draws the image from its seed.
pub struct Split {
    source: Source,
    labels: Vec<usize>,
    coarse_labels: Option<Vec<usize>>,
}

pub(crate) enum Source {
    /// Equal-sized images packed one after the other, each HWC RGB.
    Packed {
        width: usize,
        height: usize,
        pixels: Vec<u8>,
    },
    /// One image file per example (JPEG or PNG).
    Files(Vec<PathBuf>),
    /// Procedurally drawn images; see `synthetic.rs`.
    Synthetic(Renderer),
}

impl Split {
    pub(crate) fn new(
        source: Source,
        labels: Vec<usize>,
        coarse_labels: Option<Vec<usize>>,
    ) -> Split {
        Split {
            source,
            labels,
            coarse_labels,
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Class index of every example, in example order.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// Superclass of every example where the data set has them (CIFAR-100's 20 coarse classes).
    pub fn coarse_labels(&self) -> Option<&[usize]> {
        self.coarse_labels.as_deref()
    }

    /// The image of example `index`, decoded to RGB.
    pub fn image(&self, index: usize) -> Result<Image> {
        if index >= self.len() {
            return Err(DataError::Invalid(format!(
                "image {index} requested from a split of {} images",
                self.len()
            )));
        }
        match &self.source {
            Source::Packed {
                width,
                height,
                pixels,
            } => {
                let size = width * height * 3;
                let bytes = pixels[index * size..(index + 1) * size].to_vec();
                Image::new(*width, *height, bytes)
            }
            Source::Files(paths) => super::imagefolder::decode(&paths[index]),
            Source::Synthetic(renderer) => Ok(renderer.render(index)),
        }
    }
}
