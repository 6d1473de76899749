//! Attention throughput, O = softmax(scale · Q Kᵀ + bias) V with BEiT's relative position bias
//! [H, N, N]: forward, and forward + backward (gradients of q, k, v and the bias), on the CPU
//! and on the GPU when one opens (gpu:0, or CLCE_DEVICE=gpu:N).
//!
//! Shape [B, H, N, D]: CLCE_BENCH_FULL=1 measures BEiT-base at batch 128 (128 × 12 × 197 × 64,
//! the shape of the GPU issue); without it, a batch of 4 (4 × 12 × 197 × 64), which a 2-core
//! CPU and lavapipe get through in seconds.
//!
//! FLOP count: the forward is two products (Q Kᵀ and P V) of 2·N²·D each per (batch, head);
//! the backward four more (dV = Pᵀ dO, dP = dO Vᵀ, dQ = dS K, dK = dSᵀ Q). The fused GPU
//! kernels also recompute Q Kᵀ in the backward; that is not counted, so every path is
//! measured against the same useful work. Criterion's "elem/s" reads as FLOP/s; each line
//! printed beside it gives the best time in GFLOP/s (by wall and CPU time, see benches/common).
//!
//! Run: `cargo bench --bench attention` (CLCE_BENCH_FULL=1 on a real GPU).
// Shared with the other benches; this one does not use them all.
#[allow(dead_code)]
mod common;

use std::time::Duration;

use clce::engine::autograd::{backward_with_grad, no_grad};
use clce::engine::ops::attention::attention;
use clce::engine::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};

fn shape() -> [usize; 4] {
    if common::full() {
        [128, 12, 197, 64]
    } else {
        [4, 12, 197, 64]
    }
}

fn devices() -> Vec<Device> {
    let mut devices = vec![Device::Cpu];
    match common::open_gpu() {
        Ok(d) => devices.push(d),
        Err(e) => eprintln!("attention: CPU only ({e})"),
    }
    devices
}

fn bench(c: &mut Criterion) {
    let [b, h, n, d] = shape();
    let forward_flops = 2 * (2 * b * h * n * n * d) as u64;
    let mut group = c.benchmark_group("attention");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for device in devices() {
        let dev = &device;
        let randn = |shape: &[usize], seed| {
            Tensor::randn(shape, 1.0, seed, DType::F32, dev)
                .unwrap()
                .set_requires_grad(true)
        };
        let (q, k, v) = (
            randn(&[b, h, n, d], 1),
            randn(&[b, h, n, d], 2),
            randn(&[b, h, n, d], 3),
        );
        let bias = randn(&[h, n, n], 4);
        let dy = Tensor::randn([b, h, n, d], 1.0, 5, DType::F32, dev).unwrap();
        let scale = 1.0 / (d as f64).sqrt();
        let sync = || dev.synchronize().unwrap();

        let forward = || {
            let _g = no_grad();
            drop(attention(&q, &k, &v, Some(&bias), scale).unwrap());
            sync();
        };
        let train = || {
            let o = attention(&q, &k, &v, Some(&bias), scale).unwrap();
            backward_with_grad(&o, &dy).unwrap();
            sync();
            for t in [&q, &k, &v, &bias] {
                t.zero_grad();
            }
        };

        let label = if device.is_cpu() { "cpu" } else { "gpu" };
        let id = format!("{b}x{h}x{n}x{d}/{label}");
        common::forward_backward(
            &mut group,
            &id,
            &format!("attention {b}x{h}x{n}x{d} on {device}"),
            forward_flops,
            forward,
            train,
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
