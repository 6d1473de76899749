//! The decoded image every data set hands out: 8-bit RGB, height x width x channel.
use super::error::{DataError, Result};

/// An 8-bit RGB image, rows top to bottom, each pixel's R, G, B next to each other (HWC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl Image {
    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Result<Image> {
        if width == 0 || height == 0 || pixels.len() != width * height * 3 {
            return Err(DataError::Invalid(format!(
                "an RGB image of {width}x{height} needs {} bytes, got {}",
                width * height * 3,
                pixels.len()
            )));
        }
        Ok(Image {
            width,
            height,
            pixels,
        })
    }

    /// Interleaves channel-planar bytes (all R, then all G, then all B; CIFAR's layout).
    pub(crate) fn from_planar(width: usize, height: usize, planar: &[u8]) -> Image {
        let plane = width * height;
        debug_assert_eq!(planar.len(), 3 * plane);
        let mut pixels = Vec::with_capacity(3 * plane);
        for p in 0..plane {
            pixels.extend_from_slice(&[planar[p], planar[plane + p], planar[2 * plane + p]]);
        }
        Image {
            width,
            height,
            pixels,
        }
    }

    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let at = (y * self.width + x) * 3;
        [self.pixels[at], self.pixels[at + 1], self.pixels[at + 2]]
    }
}
