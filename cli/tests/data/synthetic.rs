//! The synthetic set: deterministic, balanced, varied, and different between its splits.
use std::path::Path;

use clce_cli::data::{DataSpec, Dataset, Image};

fn open(spec: &str, size: usize) -> Dataset {
    Dataset::open(&spec.parse::<DataSpec>().unwrap(), Path::new("."), size).unwrap()
}

fn mean_abs_difference(a: &Image, b: &Image) -> f64 {
    let total: f64 = a
        .pixels
        .iter()
        .zip(&b.pixels)
        .map(|(&x, &y)| (x as f64 - y as f64).abs())
        .sum();
    total / a.pixels.len() as f64
}

#[test]
fn same_seed_same_images_other_seed_other_images() {
    let a = open("synthetic:classes=5,train=3,test=2,seed=1", 24);
    let b = open("synthetic:classes=5,train=3,test=2,seed=1", 24);
    let c = open("synthetic:classes=5,train=3,test=2,seed=2", 24);
    for i in 0..a.train.len() {
        let image = a.train.image(i).unwrap();
        assert_eq!((image.width, image.height), (24, 24));
        assert_eq!(image, b.train.image(i).unwrap());
        assert!(mean_abs_difference(&image, &c.train.image(i).unwrap()) > 5.0);
    }
}

#[test]
fn classes_are_balanced_and_named() {
    let data = open("synthetic:classes=7,train=4,test=3", 16);
    assert_eq!(data.class_names.len(), 7);
    for (split, per_class) in [(&data.train, 4), (&data.test, 3)] {
        let mut counts = [0; 7];
        split.labels().iter().for_each(|&l| counts[l] += 1);
        assert_eq!(counts, [per_class; 7]);
    }
    let distinct: std::collections::HashSet<_> = data.class_names.iter().collect();
    assert_eq!(distinct.len(), 7);
}

#[test]
fn default_is_ten_classes_at_the_model_size() {
    let data = open("synthetic", 40);
    assert_eq!(data.num_classes(), 10);
    assert_eq!(data.train.len(), 1000);
    assert_eq!(data.test.len(), 200);
    assert_eq!(data.train.image(0).unwrap().width, 40);
}

#[test]
fn test_split_comes_from_its_own_stream() {
    let data = open("synthetic:classes=3,train=2,test=2", 32);
    for i in 0..data.test.len() {
        let (train, test) = (data.train.image(i).unwrap(), data.test.image(i).unwrap());
        assert_eq!(data.train.labels()[i], data.test.labels()[i]);
        assert!(
            mean_abs_difference(&train, &test) > 5.0,
            "test image {i} repeats train"
        );
    }
}

#[test]
fn images_of_a_class_vary_and_classes_differ_on_average() {
    // Same class: position, size, rotation and background change from image to image.
    let data = open("synthetic:classes=4,train=6,test=1", 32);
    let of_class = |c: usize| -> Vec<Image> {
        (0..data.train.len())
            .filter(|&i| data.train.labels()[i] == c)
            .map(|i| data.train.image(i).unwrap())
            .collect()
    };
    let zeros = of_class(0);
    assert!(mean_abs_difference(&zeros[0], &zeros[1]) > 5.0);

    // Per-class mean images differ between classes more than within-class noise would make
    // them differ by chance: a nearest-class-mean classifier beats chance on held-out images.
    let train = open("synthetic:classes=4,train=60,test=15", 24);
    let means: Vec<Vec<f64>> = (0..4)
        .map(|c| {
            let members: Vec<Image> = (0..train.train.len())
                .filter(|&i| train.train.labels()[i] == c)
                .map(|i| train.train.image(i).unwrap())
                .collect();
            (0..members[0].pixels.len())
                .map(|p| {
                    members.iter().map(|m| m.pixels[p] as f64).sum::<f64>() / members.len() as f64
                })
                .collect()
        })
        .collect();
    let mut correct = 0;
    for i in 0..train.test.len() {
        let image = train.test.image(i).unwrap();
        let distance = |mean: &Vec<f64>| -> f64 {
            mean.iter()
                .zip(&image.pixels)
                .map(|(m, &p)| (m - p as f64).powi(2))
                .sum()
        };
        let predicted = (0..4)
            .min_by(|&a, &b| distance(&means[a]).total_cmp(&distance(&means[b])))
            .unwrap();
        correct += (predicted == train.test.labels()[i]) as usize;
    }
    let accuracy = correct as f64 / train.test.len() as f64;
    assert!(
        accuracy > 0.4,
        "nearest mean accuracy {accuracy} (chance 0.25)"
    );
}
