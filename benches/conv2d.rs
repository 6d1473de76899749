//! conv2d throughput at ResNet-101 shapes (batch 8): forward, and forward + backward (input
//! and weight gradients). Criterion's throughput is the multiply-add count times 2 (times 3
//! with the backward pass, which does two more products of the forward's size), so its
//! "elem/s" reads as FLOP/s; each shape also prints its best times in GFLOP/s (by wall and
//! by CPU time, see benches/common).
// Shared with the other benches; this one does not use them all.
#[allow(dead_code)]
mod common;

use std::time::Duration;

use clce::engine::autograd::backward_with_grad;
use clce::engine::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

struct Shape {
    name: &'static str,
    x: [usize; 4],
    w: [usize; 4],
    stride: usize,
    padding: usize,
}

const SHAPES: [Shape; 3] = [
    // A bottleneck's 3x3 in the first stage (conv2_x).
    Shape {
        name: "3x3_64-64_56px",
        x: [8, 64, 56, 56],
        w: [64, 64, 3, 3],
        stride: 1,
        padding: 1,
    },
    // The 1x1 reduction that opens the next bottleneck of that stage.
    Shape {
        name: "1x1_256-64_56px",
        x: [8, 256, 56, 56],
        w: [64, 256, 1, 1],
        stride: 1,
        padding: 0,
    },
    // The stem: 7x7 stride 2 over the RGB image.
    Shape {
        name: "7x7s2_3-64_224px",
        x: [8, 3, 224, 224],
        w: [64, 3, 7, 7],
        stride: 2,
        padding: 3,
    },
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv2d");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let cpu = &Device::Cpu;
    for s in SHAPES {
        let x = Tensor::randn(s.x, 1.0, 1, DType::F32, cpu).unwrap();
        let w = Tensor::randn(s.w, 0.05, 2, DType::F32, cpu).unwrap();
        let y = x.conv2d(&w, None, s.stride, s.padding).unwrap();
        let dy = Tensor::randn(y.shape().clone(), 1.0, 3, DType::F32, cpu).unwrap();
        let [_, c_in, kh, kw] = s.w;
        let macs = y.numel() * c_in * kh * kw;
        let forward_flops = 2 * macs as u64;

        let forward = || drop(x.conv2d(&w, None, s.stride, s.padding).unwrap());
        let (xg, wg) = (x.set_requires_grad(true), w.set_requires_grad(true));
        let train = || {
            let y = xg.conv2d(&wg, None, s.stride, s.padding).unwrap();
            backward_with_grad(&y, &dy).unwrap();
            xg.zero_grad();
            wg.zero_grad();
        };

        group.throughput(Throughput::Elements(forward_flops));
        group.bench_function(BenchmarkId::new("forward", s.name), |b| b.iter(forward));
        group.throughput(Throughput::Elements(3 * forward_flops));
        group.bench_function(BenchmarkId::new("forward_backward", s.name), |b| {
            b.iter(train)
        });
        let fwd = common::best_rates(forward_flops as f64, 5, forward);
        let both = common::best_rates(3.0 * forward_flops as f64, 5, train);
        println!("conv2d {} forward: {fwd} (best of 5)", s.name);
        println!("conv2d {} forward+backward: {both} (best of 5)", s.name);
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
