//! GPU conv2d throughput at the four ResNet-101 stage shapes: the 3×3 convolution of a
//! bottleneck in conv2_x .. conv5_x (64 channels at 56², 128 at 28², 256 at 14², 512 at 7²;
//! stride 1, padding 1), forward and forward + backward (input and weight gradients).
//!
//! FLOP count: 2 per multiply-add of the forward; the backward does two more products of
//! the forward's size, so forward + backward counts 3 times that. Criterion's "elem/s"
//! reads as FLOP/s; each shape also prints its best wall time in GFLOP/s.
//!
//! Batch: CLCE_CONV_BATCH, else 8 on a real GPU and 1 on a software adapter (lavapipe).
//! Run: `cargo bench --bench gpu_conv2d` (CLCE_DEVICE=gpu:N picks another adapter).
// Shared with the other benches; this one does not use them all.
#[allow(dead_code)]
mod common;

use std::time::Duration;

use clce::engine::autograd::{backward_with_grad, no_grad};
use clce::engine::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};

/// (stage, channels, side) of each stage's bottleneck 3×3 convolution.
const STAGES: [(&str, usize, usize); 4] = [
    ("conv2_x", 64, 56),
    ("conv3_x", 128, 28),
    ("conv4_x", 256, 14),
    ("conv5_x", 512, 7),
];

fn batch(software: bool) -> usize {
    std::env::var("CLCE_CONV_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(if software { 1 } else { 8 })
}

fn bench(c: &mut Criterion) {
    let device = match common::open_gpu() {
        Ok(d) => d,
        Err(e) => return eprintln!("gpu_conv2d: nothing to measure ({e})"),
    };
    let Device::Gpu(gpu) = &device else { return };
    let software = gpu.info().is_software;
    let n = batch(software);
    let mut group = c.benchmark_group(format!("gpu_conv2d/{}", gpu.info().name));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let dev = &device;
    for (stage, ch, side) in STAGES {
        let x = Tensor::randn([n, ch, side, side], 1.0, 1, DType::F32, dev)
            .unwrap()
            .set_requires_grad(true);
        let w = Tensor::randn([ch, ch, 3, 3], 0.05, 2, DType::F32, dev)
            .unwrap()
            .set_requires_grad(true);
        let dy = Tensor::randn([n, ch, side, side], 1.0, 3, DType::F32, dev).unwrap();
        let forward_flops = (2 * n * ch * side * side * ch * 9) as u64;

        let forward = || {
            let _g = no_grad();
            drop(x.conv2d(&w, None, 1, 1).unwrap());
            dev.synchronize().unwrap();
        };
        let train = || {
            let y = x.conv2d(&w, None, 1, 1).unwrap();
            backward_with_grad(&y, &dy).unwrap();
            dev.synchronize().unwrap();
            x.zero_grad();
            w.zero_grad();
        };

        let id = format!("{stage}_{ch}ch_{side}px_batch{n}");
        common::forward_backward(
            &mut group,
            &id,
            &format!("conv2d {id} on {device}"),
            forward_flops,
            forward,
            train,
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
