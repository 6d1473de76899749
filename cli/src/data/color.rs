//! The photometric augmentations, on HWC float images in [0, 1], with torchvision's formulas
//! for tensors (`torchvision.transforms.functional_tensor`): each result is clamped to [0, 1].
use rand::seq::SliceRandom;
use rand::Rng;

/// ITU-R 601-2 luma, torchvision's `rgb_to_grayscale` weights.
fn luma(p: &[f32]) -> f32 {
    0.2989 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

/// Blends every channel towards `towards(pixel)` by `1 - factor`:
/// `factor * x + (1 - factor) * towards`, clamped. Brightness, contrast and saturation are all
/// this blend, with black, the mean grey level and the pixel's own grey as the target.
fn blend(image: &mut [f32], factor: f32, towards: impl Fn(&[f32]) -> f32) {
    for p in image.chunks_exact_mut(3) {
        let t = towards(p);
        for v in p.iter_mut() {
            *v = (factor * *v + (1.0 - factor) * t).clamp(0.0, 1.0);
        }
    }
}

pub(crate) fn adjust_brightness(image: &mut [f32], factor: f32) {
    blend(image, factor, |_| 0.0);
}

pub(crate) fn adjust_contrast(image: &mut [f32], factor: f32) {
    let pixels = (image.len() / 3).max(1) as f32;
    let mean = image.chunks_exact(3).map(luma).sum::<f32>() / pixels;
    blend(image, factor, |_| mean);
}

pub(crate) fn adjust_saturation(image: &mut [f32], factor: f32) {
    blend(image, factor, luma);
}

/// Rotates every pixel's hue by `shift` turns (in [-0.5, 0.5]).
pub(crate) fn adjust_hue(image: &mut [f32], shift: f32) {
    for p in image.chunks_exact_mut(3) {
        let (h, s, v) = rgb_to_hsv(p[0], p[1], p[2]);
        let shifted = h + shift;
        let rgb = hsv_to_rgb(shifted - shifted.floor(), s, v);
        p.copy_from_slice(&rgb);
    }
}

pub(crate) fn to_grayscale(image: &mut [f32]) {
    for p in image.chunks_exact_mut(3) {
        let g = luma(p);
        p.fill(g);
    }
}

/// torchvision's `_rgb2hsv`: hue in [0, 1), grey pixels get hue 0 and saturation 0.
fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let chroma = max - min;
    if chroma == 0.0 {
        return (0.0, 0.0, max);
    }
    let s = chroma / max;
    let inv = 1.0 / chroma;
    let (rc, gc, bc) = ((max - r) * inv, (max - g) * inv, (max - b) * inv);
    let h = if max == r {
        bc - gc
    } else if max == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    // h / 6 lies in [-1/6, 1): wrap the negative part of red's sector into [0, 1).
    let h = h / 6.0;
    (if h < 0.0 { h + 1.0 } else { h }, s, max)
}

/// torchvision's `_hsv2rgb`.
fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let sector = (h * 6.0).floor();
    let f = h * 6.0 - sector;
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    // A hue that rounded up to exactly 1.0 is sector 6, which is sector 0.
    match sector as i32 % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// Strengths of `ColorJitter`: brightness, contrast and saturation factors are drawn from
/// [max(0, 1 - x), 1 + x], the hue shift from [-hue, hue] (hue <= 0.5).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColorJitter {
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
}

impl ColorJitter {
    /// Draws the four factors and a random order, then applies them, as torchvision's
    /// `ColorJitter.forward` does.
    pub(crate) fn apply(&self, image: &mut [f32], rng: &mut impl Rng) {
        let mut factor = |x: f32| rng.random_range((1.0 - x).max(0.0)..=1.0 + x);
        let brightness = factor(self.brightness);
        let contrast = factor(self.contrast);
        let saturation = factor(self.saturation);
        let hue = rng.random_range(-self.hue..=self.hue);
        let mut order = [0, 1, 2, 3];
        order.shuffle(rng);
        for step in order {
            match step {
                0 => adjust_brightness(image, brightness),
                1 => adjust_contrast(image, contrast),
                2 => adjust_saturation(image, saturation),
                _ => adjust_hue(image, hue),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsv_round_trip_and_known_hues() {
        for rgb in [
            [1.0, 0.0, 0.0],
            [0.2, 0.7, 0.4],
            [0.9, 0.9, 0.1],
            [0.3, 0.3, 0.3],
        ] {
            let (h, s, v) = rgb_to_hsv(rgb[0], rgb[1], rgb[2]);
            let back = hsv_to_rgb(h, s, v);
            for c in 0..3 {
                assert!((back[c] - rgb[c]).abs() < 1e-6, "{rgb:?} -> {back:?}");
            }
        }
        assert!((rgb_to_hsv(0.0, 1.0, 0.0).0 - 1.0 / 3.0).abs() < 1e-6);
        assert!((rgb_to_hsv(0.0, 0.0, 1.0).0 - 2.0 / 3.0).abs() < 1e-6);
        assert_eq!(hsv_to_rgb(1.0, 1.0, 1.0), [1.0, 0.0, 0.0], "hue 1 is hue 0");
    }

    #[test]
    fn a_third_turn_of_hue_cycles_the_primaries() {
        let mut image = vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        adjust_hue(&mut image, 1.0 / 3.0);
        let expected = [0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        for (a, b) in image.iter().zip(expected) {
            assert!((a - b).abs() < 1e-5, "{image:?}");
        }
    }

    #[test]
    fn blends_move_towards_their_targets() {
        let pixel = [0.8f32, 0.4, 0.2];
        let mut b = pixel.to_vec();
        adjust_brightness(&mut b, 0.5);
        assert_eq!(b, vec![0.4, 0.2, 0.1]);

        let mut s = pixel.to_vec();
        adjust_saturation(&mut s, 0.0);
        let grey = luma(&pixel);
        assert!(s.iter().all(|&v| (v - grey).abs() < 1e-6));

        // Contrast 0 gives every pixel the image's mean grey level.
        let mut c = vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0];
        adjust_contrast(&mut c, 0.0);
        let mean = (luma(&[1.0, 1.0, 1.0]) + 0.0) / 2.0;
        assert!(c.iter().all(|&v| (v - mean).abs() < 1e-6), "{c:?}");

        let mut bright = vec![0.9f32; 3];
        adjust_brightness(&mut bright, 1.4);
        assert_eq!(bright, vec![1.0; 3], "results are clamped to [0, 1]");
    }
}
