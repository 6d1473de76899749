//! Batch layout, shuffling, determinism and evaluation order of the loader.
use std::collections::HashSet;
use std::path::Path;

use clce_cli::data::augment::{eval_view, train_view, AugmentConfig, ViewKey};
use clce_cli::data::{Batch, DataSpec, Dataset, Loader, Normalization};
use clce_engine::Device;

const NORM: Normalization = Normalization {
    mean: [0.5; 3],
    std: [0.5; 3],
};
const SIZE: usize = 16;

fn dataset() -> Dataset {
    let spec: DataSpec = "synthetic:classes=4,train=5,test=3".parse().unwrap();
    Dataset::open(&spec, Path::new("."), 12).unwrap()
}

fn train_epoch(data: &Dataset, batch: usize, seed: u64, epoch: u64) -> Vec<Batch> {
    let cfg = AugmentConfig::clce(SIZE, NORM);
    Loader::train(data.train.clone(), batch, seed, epoch, &cfg)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn views_i_and_i_plus_b_are_two_views_of_one_image() {
    let data = dataset();
    let b = 6;
    let batches = train_epoch(&data, b, 0, 0);
    assert_eq!(
        batches.len(),
        20 / b,
        "the incomplete last batch is dropped"
    );
    let view_len = 3 * SIZE * SIZE;
    for batch in &batches {
        assert_eq!(batch.shape, [2 * b, 3, SIZE, SIZE]);
        assert_eq!(batch.images.len(), 2 * b * view_len);
        for i in 0..b {
            assert_eq!(batch.indices[i], batch.indices[i + b]);
            assert_eq!(batch.labels[i], batch.labels[i + b]);
            assert_eq!(batch.labels[i], data.train.labels()[batch.indices[i]]);
            let first = &batch.images[i * view_len..(i + 1) * view_len];
            let second = &batch.images[(i + b) * view_len..(i + b + 1) * view_len];
            assert_ne!(first, second, "the two views must be drawn independently");
        }
    }
}

#[test]
fn every_view_is_the_pure_function_of_its_key() {
    // Whatever thread made it, row r of a batch is train_view(image, key(index, r / B)).
    let data = dataset();
    let cfg = AugmentConfig::clce(SIZE, NORM);
    let (b, seed, epoch) = (4, 9, 3);
    let view_len = 3 * SIZE * SIZE;
    for batch in train_epoch(&data, b, seed, epoch) {
        for row in 0..2 * b {
            let index = batch.indices[row];
            let key = ViewKey {
                seed,
                epoch,
                index,
                view: row / b,
            };
            let expected = train_view(&data.train.image(index).unwrap(), &cfg, key);
            assert_eq!(
                &batch.images[row * view_len..(row + 1) * view_len],
                &expected[..]
            );
        }
    }
}

#[test]
fn two_runs_give_identical_batches_and_epochs_reshuffle() {
    let data = dataset();
    let run = || train_epoch(&data, 5, 42, 1);
    let (a, b) = (run(), run());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.indices, y.indices);
        assert_eq!(x.images, y.images);
    }
    let order = |batches: &[Batch]| -> Vec<usize> {
        batches
            .iter()
            .flat_map(|x| x.indices[..x.indices.len() / 2].to_vec())
            .collect()
    };
    let epoch1 = order(&a);
    assert_eq!(
        epoch1.iter().collect::<HashSet<_>>().len(),
        20,
        "each image once per epoch"
    );
    assert_ne!(epoch1, order(&train_epoch(&data, 5, 42, 2)));
    assert_ne!(epoch1, order(&train_epoch(&data, 5, 43, 1)));
    assert_ne!(epoch1, (0..20).collect::<Vec<_>>(), "shuffled");
}

#[test]
fn eval_batches_are_in_order_with_a_short_last_batch() {
    let data = dataset();
    let batches: Vec<Batch> = Loader::eval(data.test.clone(), 5, SIZE, &NORM)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        batches.iter().map(|b| b.shape[0]).collect::<Vec<_>>(),
        [5, 5, 2]
    );
    let indices: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(indices, (0..12).collect::<Vec<_>>());
    let labels: Vec<usize> = batches.iter().flat_map(|b| b.labels.clone()).collect();
    assert_eq!(labels, data.test.labels());
    let view_len = 3 * SIZE * SIZE;
    let expected = eval_view(&data.test.image(11).unwrap(), SIZE, &NORM);
    assert_eq!(&batches[2].images[view_len..], &expected[..]);
}

#[test]
fn loader_reports_its_length_and_stops_cleanly_when_dropped_early() {
    let data = dataset();
    let cfg = AugmentConfig::clce(SIZE, NORM);
    let mut loader = Loader::train(data.train.clone(), 3, 0, 0, &cfg).unwrap();
    assert_eq!(loader.len(), 6);
    let first = loader.next().unwrap().unwrap();
    assert_eq!(loader.len(), 5);
    drop(loader); // must not hang on the worker blocked on a full channel

    let tensor = first.to_tensor(&Device::Cpu).unwrap();
    assert_eq!(tensor.dims(), &[6, 3, SIZE, SIZE]);
}

#[test]
fn a_batch_larger_than_the_split_is_an_error() {
    let data = dataset();
    let cfg = AugmentConfig::clce(SIZE, NORM);
    let msg = Loader::train(data.train.clone(), 21, 0, 0, &cfg)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("21") && msg.contains("20"), "{msg}");
}

#[test]
fn resuming_an_epoch_gives_its_remaining_batches() {
    let data = dataset();
    let cfg = AugmentConfig::clce(SIZE, NORM);
    let whole = train_epoch(&data, 3, 5, 2);
    let rest: Vec<Batch> = Loader::train_from(data.train.clone(), 3, 5, 2, &cfg, 4)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rest.len(), whole.len() - 4);
    for (a, b) in rest.iter().zip(&whole[4..]) {
        assert_eq!((&a.indices, &a.images), (&b.indices, &b.images));
    }
    let past_the_end = Loader::train_from(data.train.clone(), 3, 5, 2, &cfg, 99).unwrap();
    assert_eq!(past_the_end.count(), 0);
}
