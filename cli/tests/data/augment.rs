//! Properties of the training and evaluation views.
use clce_cli::data::augment::{
    eval_view, random_resized_crop_params, train_view, AugmentConfig, Crop, ViewKey,
};
use clce_cli::data::{Image, Normalization};
use rand::SeedableRng;

use super::pixel_value;

const BEIT: Normalization = Normalization {
    mean: [0.5; 3],
    std: [0.5; 3],
};
const IMAGENET: Normalization = Normalization {
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
};

fn test_image(w: usize, h: usize) -> Image {
    let mut pixels = Vec::new();
    for y in 0..h {
        for x in 0..w {
            pixels.extend([0, 1, 2].map(|c| pixel_value(0, x, y, c)));
        }
    }
    Image::new(w, h, pixels).unwrap()
}

fn key(index: usize, view: usize) -> ViewKey {
    ViewKey {
        seed: 11,
        epoch: 2,
        index,
        view,
    }
}

/// Only the geometric part: no colour jitter, no grayscale, no flip.
fn geometric_only(size: usize) -> AugmentConfig {
    AugmentConfig {
        flip_p: 0.0,
        jitter_p: 0.0,
        grayscale_p: 0.0,
        ..AugmentConfig::clce(size, IMAGENET)
    }
}

/// Value at channel c, row y, column x of a CHW view of side `size`, undone normalisation.
fn at(view: &[f32], size: usize, norm: &Normalization, c: usize, y: usize, x: usize) -> f32 {
    view[(c * size + y) * size + x] * norm.std[c] + norm.mean[c]
}

#[test]
fn views_have_the_model_shape_and_the_normalised_range() {
    let image = test_image(32, 32);
    for norm in [BEIT, IMAGENET] {
        let cfg = AugmentConfig::clce(48, norm);
        for v in 0..20 {
            let view = train_view(&image, &cfg, key(v, 0));
            assert_eq!(view.len(), 3 * 48 * 48);
            for c in 0..3 {
                let (lo, hi) = (
                    (0.0 - norm.mean[c]) / norm.std[c],
                    (1.0 - norm.mean[c]) / norm.std[c],
                );
                let plane = &view[c * 48 * 48..(c + 1) * 48 * 48];
                assert!(plane
                    .iter()
                    .all(|&x| x.is_finite() && lo - 1e-5 <= x && x <= hi + 1e-5));
            }
        }
    }
}

#[test]
fn the_same_key_gives_the_same_view_and_other_keys_other_views() {
    let image = test_image(32, 32);
    let cfg = AugmentConfig::clce(40, BEIT);
    let view = train_view(&image, &cfg, key(3, 0));
    assert_eq!(view, train_view(&image, &cfg, key(3, 0)));
    assert_ne!(
        view,
        train_view(&image, &cfg, key(3, 1)),
        "second view repeats the first"
    );
    let other_epoch = ViewKey {
        epoch: 3,
        ..key(3, 0)
    };
    assert_ne!(view, train_view(&image, &cfg, other_epoch));

    // A different image index draws a different crop (geometry alone).
    let geometric = geometric_only(40);
    let crops: std::collections::HashSet<Vec<u32>> = (0..8)
        .map(|i| {
            train_view(&image, &geometric, key(i, 0))
                .iter()
                .map(|x| x.to_bits())
                .collect()
        })
        .collect();
    assert_eq!(crops.len(), 8);
}

#[test]
fn flipping_mirrors_the_view() {
    let image = test_image(32, 32);
    let size = 36;
    let plain = train_view(&image, &geometric_only(size), key(5, 0));
    let flipped_cfg = AugmentConfig {
        flip_p: 1.0,
        ..geometric_only(size)
    };
    let flipped = train_view(&image, &flipped_cfg, key(5, 0));
    for c in 0..3 {
        for y in 0..size {
            for x in 0..size {
                let i = (c * size + y) * size + x;
                let mirrored = (c * size + y) * size + (size - 1 - x);
                assert_eq!(flipped[i], plain[mirrored]);
            }
        }
    }
}

#[test]
fn grayscale_makes_the_channels_equal() {
    let image = test_image(32, 32);
    let cfg = AugmentConfig {
        grayscale_p: 1.0,
        ..AugmentConfig::clce(24, IMAGENET)
    };
    for v in 0..5 {
        let view = train_view(&image, &cfg, key(v, 0));
        for y in 0..24 {
            for x in 0..24 {
                let r = at(&view, 24, &IMAGENET, 0, y, x);
                for c in 1..3 {
                    assert!((at(&view, 24, &IMAGENET, c, y, x) - r).abs() < 1e-5);
                }
            }
        }
    }
}

#[test]
fn colour_jitter_changes_colours_but_not_geometry() {
    // A two-colour image: jitter changes the colours, but the boundary stays where it was.
    let mut pixels = Vec::new();
    for _y in 0..32 {
        for x in 0..32 {
            pixels.extend(if x < 16 { [200, 40, 40] } else { [30, 60, 220] });
        }
    }
    let image = Image::new(32, 32, pixels).unwrap();
    let crop_only = AugmentConfig {
        crop_scale: (1.0, 1.0),
        crop_ratio: (1.0, 1.0),
        ..geometric_only(32)
    };
    let jittered_cfg = AugmentConfig {
        jitter_p: 1.0,
        ..crop_only
    };
    let plain = train_view(&image, &crop_only, key(0, 0));
    let jittered = train_view(&image, &jittered_cfg, key(0, 0));
    assert_ne!(plain, jittered);
    let px = |v: &[f32], x: usize| [0, 1, 2].map(|c| at(v, 32, &IMAGENET, c, 10, x));
    assert_eq!(
        px(&jittered, 3),
        px(&jittered, 12),
        "left half stays uniform"
    );
    assert_eq!(
        px(&jittered, 20),
        px(&jittered, 30),
        "right half stays uniform"
    );
    assert_ne!(px(&jittered, 3), px(&jittered, 30));
}

#[test]
fn crops_follow_torchvision_random_resized_crop() {
    let image = test_image(64, 48);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let (w, h) = (64.0, 48.0);
    for _ in 0..500 {
        let c = random_resized_crop_params(&image, (0.2, 1.0), (0.75, 4.0 / 3.0), &mut rng);
        assert!(c.width >= 1 && c.left + c.width <= 64 && c.height >= 1 && c.top + c.height <= 48);
        // Rounding to whole pixels loosens the bounds by about a pixel.
        let area = (c.width * c.height) as f64 / (w * h);
        assert!((0.2 * 0.9..=1.0).contains(&area), "{c:?}");
        let ratio = c.width as f64 / c.height as f64;
        assert!((0.75 * 0.9..=4.0 / 3.0 * 1.1).contains(&ratio), "{c:?}");
    }
    // No crop of 90% area with ratio <= 4/3 fits a 100 x 10 strip: centre crop with ratio 4/3.
    let strip = test_image(100, 10);
    let c = random_resized_crop_params(&strip, (0.9, 1.0), (0.75, 4.0 / 3.0), &mut rng);
    assert_eq!(
        c,
        Crop {
            top: 0,
            left: 43,
            height: 10,
            width: 13
        }
    );
}

#[test]
fn eval_view_of_an_image_at_the_model_size_is_just_normalised() {
    let image = test_image(20, 20);
    let view = eval_view(&image, 20, &IMAGENET);
    for c in 0..3 {
        for y in 0..20 {
            for x in 0..20 {
                let expected = pixel_value(0, x, y, c) as f32 / 255.0;
                assert!((at(&view, 20, &IMAGENET, c, y, x) - expected).abs() < 1e-5);
            }
        }
    }
}

#[test]
fn eval_view_keeps_the_centred_square_of_a_wide_image() {
    let image = test_image(30, 10);
    let view = eval_view(&image, 10, &BEIT);
    for c in 0..3 {
        for x in 0..10 {
            let expected = pixel_value(0, x + 10, 4, c) as f32 / 255.0;
            assert!((at(&view, 10, &BEIT, c, 4, x) - expected).abs() < 1e-5);
        }
    }
}

#[test]
fn out_of_range_settings_are_errors() {
    let bad = AugmentConfig {
        flip_p: 1.5,
        ..AugmentConfig::clce(8, BEIT)
    };
    assert!(bad.validate().is_err());
    assert!(AugmentConfig::clce(8, BEIT).validate().is_ok());
}
