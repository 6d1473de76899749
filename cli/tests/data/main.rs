//! Tests of the data pipeline on small files written here: CIFAR in both distributions, image
//! folders, the synthetic set, the augmentation and the loader.
mod augment;
mod cifar;
mod imagefolder;
mod loader;
mod py2_pickle;
mod synthetic;

/// The test image content everywhere: a distinct byte per (image, x, y, channel).
pub fn pixel_value(image: usize, x: usize, y: usize, c: usize) -> u8 {
    ((image * 31 + x * 7 + y * 13 + c * 101) % 251) as u8
}
