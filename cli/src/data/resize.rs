//! Cropping and bilinear resizing, the way PIL resizes (which torchvision uses for PIL images,
//! and matches with `antialias=True` on tensors): a triangle filter whose support widens with
//! the shrink factor, so downscaling averages every covered pixel instead of skipping some.
//! When enlarging this is plain bilinear interpolation with half-pixel centres.
use super::image::Image;

/// A rectangle of an image, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// The pixels of `crop` resized to `out_height` x `out_width`, as HWC floats in [0, 1].
pub(crate) fn resized_crop(
    image: &Image,
    crop: Crop,
    out_height: usize,
    out_width: usize,
) -> Vec<f32> {
    debug_assert!(crop.top + crop.height <= image.height && crop.left + crop.width <= image.width);
    let columns = taps(crop.width, out_width);
    let rows = taps(crop.height, out_height);

    // Horizontal pass over the rows of the crop, then vertical pass over its result.
    let mut wide = vec![0.0f32; crop.height * out_width * 3];
    for y in 0..crop.height {
        let src_row = &image.pixels[((crop.top + y) * image.width + crop.left) * 3..];
        let dst_row = &mut wide[y * out_width * 3..(y + 1) * out_width * 3];
        for (x, tap) in columns.iter().enumerate() {
            let mut acc = [0.0f32; 3];
            for (k, w) in tap.weights.iter().enumerate() {
                let px = &src_row[(tap.start + k) * 3..];
                for c in 0..3 {
                    acc[c] += w * px[c] as f32;
                }
            }
            for c in 0..3 {
                dst_row[x * 3 + c] = acc[c] / 255.0;
            }
        }
    }
    let row_len = out_width * 3;
    let mut out = vec![0.0f32; out_height * row_len];
    for (y, tap) in rows.iter().enumerate() {
        let dst = &mut out[y * row_len..(y + 1) * row_len];
        for (k, w) in tap.weights.iter().enumerate() {
            let src = &wide[(tap.start + k) * row_len..(tap.start + k + 1) * row_len];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += w * s;
            }
        }
    }
    out
}

/// The input pixels one output pixel reads, and their weights (summing to 1).
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// PIL's `precompute_coeffs` for the bilinear filter, resampling `in_len` pixels to `out_len`.
fn taps(in_len: usize, out_len: usize) -> Vec<Taps> {
    let scale = in_len as f64 / out_len as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle filter reaches 1 input pixel, widened when shrinking
    (0..out_len)
        .map(|x| {
            let center = (x as f64 + 0.5) * scale;
            let start = ((center - support + 0.5).floor().max(0.0)) as usize;
            let end = ((center + support + 0.5).floor() as usize).min(in_len);
            let mut weights: Vec<f64> = (start..end)
                .map(|i| triangle((i as f64 - center + 0.5) / filter_scale))
                .collect();
            let total: f64 = weights.iter().sum();
            weights.iter_mut().for_each(|w| *w /= total);
            Taps {
                start,
                weights: weights.into_iter().map(|w| w as f32).collect(),
            }
        })
        .collect()
}

fn triangle(x: f64) -> f64 {
    (1.0 - x.abs()).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(width: usize, height: usize, f: impl Fn(usize, usize, usize) -> u8) -> Image {
        let mut pixels = Vec::new();
        for y in 0..height {
            for x in 0..width {
                for c in 0..3 {
                    pixels.push(f(x, y, c));
                }
            }
        }
        Image::new(width, height, pixels).unwrap()
    }

    fn full(image: &Image) -> Crop {
        Crop {
            top: 0,
            left: 0,
            height: image.height,
            width: image.width,
        }
    }

    #[test]
    fn same_size_is_the_identity() {
        let img = image(5, 3, |x, y, c| (x * 40 + y * 7 + c) as u8);
        let out = resized_crop(&img, full(&img), 3, 5);
        for (o, p) in out.iter().zip(&img.pixels) {
            assert!((o * 255.0 - *p as f32).abs() < 1e-3);
        }
    }

    #[test]
    fn doubling_interpolates_between_neighbours() {
        // 2 px -> 4 px: output centres at input coordinates 0.25, 0.75, 1.25, 1.75 (half-pixel
        // convention), i.e. 100% a, 75/25, 25/75, 100% b after clamping at the borders.
        let img = image(2, 1, |x, _, _| if x == 0 { 0 } else { 200 });
        let out = resized_crop(&img, full(&img), 1, 4);
        let red: Vec<f32> = out.chunks(3).map(|p| p[0] * 255.0).collect();
        let expected = [0.0, 50.0, 150.0, 200.0];
        for (r, e) in red.iter().zip(expected) {
            assert!((r - e).abs() < 1e-3, "{red:?}");
        }
    }

    #[test]
    fn halving_averages_pixel_pairs_with_the_triangle_filter() {
        // 4 px -> 2 px: the triangle is stretched to 2 input pixels a side. Output 0 is centred
        // at input coordinate 1.0 and reads the pixel centres 0.5, 1.5, 2.5 with weights
        // 1 - |d|/2 = 0.75, 0.75, 0.25 (renormalised); output 1 mirrors it around 3.0.
        let values = [0u8, 100, 200, 40];
        let img = image(4, 1, |x, _, _| values[x]);
        let out = resized_crop(&img, full(&img), 1, 2);
        let w = [0.75f32, 0.75, 0.25];
        let first = (w[0] * 0.0 + w[1] * 100.0 + w[2] * 200.0) / w.iter().sum::<f32>();
        let last = (w[2] * 100.0 + w[1] * 200.0 + w[0] * 40.0) / w.iter().sum::<f32>();
        assert!(
            (out[0] * 255.0 - first).abs() < 1e-3,
            "{} {first}",
            out[0] * 255.0
        );
        assert!(
            (out[3] * 255.0 - last).abs() < 1e-3,
            "{} {last}",
            out[3] * 255.0
        );
    }

    #[test]
    fn a_crop_reads_only_its_rectangle() {
        let img = image(6, 6, |x, y, _| {
            if (2..4).contains(&x) && (1..5).contains(&y) {
                255
            } else {
                0
            }
        });
        let crop = Crop {
            top: 1,
            left: 2,
            height: 4,
            width: 2,
        };
        let out = resized_crop(&img, crop, 7, 3);
        assert!(out.iter().all(|&v| (v - 1.0).abs() < 1e-6));
    }
}
