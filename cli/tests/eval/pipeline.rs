//! Few-shot evaluation from images to accuracy, with fake feature extractors standing in for
//! the encoder: one whose features carry the class (a colour histogram: every synthetic class
//! has its own object colour, drawn on a random background), one whose features are noise.
use clce_cli::data::{DataSpec, Normalization, SyntheticSpec};
use clce_cli::eval::benchmarks::FewShotSplit;
use clce_cli::eval::features::{compute, FeatureExtractor};
use clce_cli::eval::fewshot::{evaluate, FewShotConfig};
use clce_cli::eval::images::{EvalData, ImageSet};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

const SIDE: usize = 32;
/// Levels per channel of the colour histogram: 4³ = 64 bins.
const LEVELS: usize = 4;
const NORM: Normalization = Normalization {
    mean: [0.5; 3],
    std: [0.5; 3],
};

/// The fraction of pixels in each of 64 colour bins, background bins removed.
struct ColourHistogram;

impl FeatureExtractor for ColourHistogram {
    fn input_size(&self) -> usize {
        SIDE
    }
    fn normalization(&self) -> Normalization {
        NORM
    }
    fn extract(&mut self, images: Vec<f32>, count: usize) -> Result<Vec<f32>, String> {
        assert_eq!(images.len(), count * 3 * SIDE * SIDE, "NCHW batch");
        let plane = SIDE * SIDE;
        let mut out = Vec::new();
        for image in images.chunks_exact(3 * plane) {
            let mut bins = vec![0.0f32; LEVELS * LEVELS * LEVELS];
            for p in 0..plane {
                let level = |c: usize| {
                    let v = image[c * plane + p] * NORM.std[c] + NORM.mean[c];
                    ((v * LEVELS as f32) as usize).min(LEVELS - 1)
                };
                bins[(level(0) * LEVELS + level(1)) * LEVELS + level(2)] += 1.0 / plane as f32;
            }
            // The random background covers most of the image and says nothing about the
            // class: drop the bins it fills, keeping the object's colour.
            bins.iter_mut().filter(|b| **b > 0.2).for_each(|b| *b = 0.0);
            out.extend(bins);
        }
        Ok(out)
    }
}

/// 64 standard normal numbers per image, whatever the image.
struct Noise(rand::rngs::StdRng);

impl FeatureExtractor for Noise {
    fn input_size(&self) -> usize {
        SIDE
    }
    fn normalization(&self) -> Normalization {
        NORM
    }
    fn extract(&mut self, _images: Vec<f32>, count: usize) -> Result<Vec<f32>, String> {
        Ok((0..count * 64)
            .map(|_| StandardNormal.sample(&mut self.0))
            .collect())
    }
}

fn synthetic_test_images() -> ImageSet {
    let data = EvalData::Standard(DataSpec::Synthetic(SyntheticSpec {
        classes: 10,
        train_per_class: 1,
        test_per_class: 25,
        seed: 0,
    }));
    ImageSet::open(&data, FewShotSplit::Test, std::path::Path::new("."), SIDE).unwrap()
}

fn config() -> FewShotConfig {
    FewShotConfig {
        episodes: 150,
        ..FewShotConfig::default()
    }
}

#[test]
fn class_informative_features_score_well_above_chance() {
    let images = synthetic_test_images();
    let mut batches = 0;
    let features = compute(&images, &mut ColourHistogram, 64, |_, _| batches += 1).unwrap();
    assert_eq!((features.len(), features.dim), (250, 64));
    assert_eq!(batches, 4);
    let results = evaluate(&features, &config()).unwrap();
    // Chance is 20% in a 5-way episode; measured 51.7% (1-shot) and 68.2% (5-shot).
    assert!(results[0].accuracy.mean > 40.0, "1-shot: {:?}", results[0]);
    assert!(results[1].accuracy.mean > 60.0, "5-shot: {:?}", results[1]);
    assert!(results[1].accuracy.mean > results[0].accuracy.mean);
}

#[test]
fn noise_features_score_near_chance() {
    let images = synthetic_test_images();
    let mut noise = Noise(rand::rngs::StdRng::seed_from_u64(4));
    let features = compute(&images, &mut noise, 64, |_, _| {}).unwrap();
    for r in evaluate(&features, &config()).unwrap() {
        let gap = (r.accuracy.mean - 20.0).abs();
        assert!(gap < 3.0 * r.accuracy.ci95.max(1.0), "{r:?}");
    }
}

#[test]
fn an_extractor_returning_the_wrong_size_is_an_error() {
    struct Broken;
    impl FeatureExtractor for Broken {
        fn input_size(&self) -> usize {
            SIDE
        }
        fn normalization(&self) -> Normalization {
            NORM
        }
        fn extract(&mut self, _: Vec<f32>, count: usize) -> Result<Vec<f32>, String> {
            Ok(vec![0.0; count * 4 + 1])
        }
    }
    let err = compute(&synthetic_test_images(), &mut Broken, 64, |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("returned"), "{err}");
}
