//! Fused LACLN (one op, closed-form dL/dS) against LACLN composed from generic ops, forward
//! and backward, on the CPU in f32: M in {128, 256, 1024, 4096} views, D = 128.
//!
//! cargo bench --bench lacln
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "common/lacln_composed.rs"]
mod lacln_composed;

use clce::engine::loss::lacln;
use clce::engine::{DType, Device, Tensor};
use lacln_composed::lacln_composed;

const D: usize = 128;
const TAU: f64 = 0.5;
const BETA: f64 = 1.0;

/// L2-normalised random features [m, D] that record gradients, and two-view labels over
/// m/8 classes.
fn batch(m: usize) -> (Tensor, Vec<usize>) {
    let x = Tensor::randn([m, D], 1.0, m as u64, DType::F32, &Device::Cpu).unwrap();
    let norm = x.mul(&x).unwrap().sum(-1, true).unwrap().sqrt().unwrap();
    let z = x.div(&norm).unwrap().detach().set_requires_grad(true);
    let labels = (0..m).map(|i| (i % (m / 2)) % (m / 8)).collect();
    (z, labels)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("lacln_fwd_bwd");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for m in [128, 256, 1024, 4096] {
        let (z, labels) = batch(m);
        group.throughput(Throughput::Elements(m as u64));
        group.bench_with_input(BenchmarkId::new("fused", m), &m, |b, _| {
            b.iter(|| {
                lacln(&z, &labels, TAU, BETA, true)
                    .unwrap()
                    .backward()
                    .unwrap();
                z.zero_grad();
            })
        });
        group.bench_with_input(BenchmarkId::new("composed", m), &m, |b, _| {
            b.iter(|| {
                lacln_composed(&z, &labels, TAU, BETA)
                    .unwrap()
                    .backward()
                    .unwrap();
                z.zero_grad();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
