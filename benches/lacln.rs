//! Fused LACLN (one op, closed-form dL/dS) against LACLN composed from generic ops, forward
//! and backward, on the CPU in f32: M in {128, 256, 1024, 4096} views, D = 128.
//!
//! cargo bench --bench lacln
//!
//! Beside criterion's report it prints, per size and version, the best wall time and the best
//! CPU time (all threads) of one forward + backward (see common/mod.rs for why both).
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

// Shared with the GFLOP/s benches; this one reports times and uses only `best_times`.
#[allow(dead_code)]
mod common;
#[path = "common/lacln_composed.rs"]
mod lacln_composed;

use clce::engine::loss::lacln;
use clce::engine::{DType, Device, Tensor};
use lacln_composed::lacln_composed;

const D: usize = 128;
const TAU: f64 = 0.5;
const BETA: f64 = 1.0;

/// L2-normalised random features [m, D] that record gradients, and the labels of two views of
/// m/2 images in m/8 classes.
fn batch(m: usize) -> (Tensor, Vec<usize>) {
    let x = Tensor::randn([m, D], 1.0, m as u64, DType::F32, &Device::Cpu).unwrap();
    let z = x.l2_normalize(-1, 1e-12).unwrap().detach();
    let labels = (0..m).map(|i| (i % (m / 2)) % (m / 8)).collect();
    (z.set_requires_grad(true), labels)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("lacln_fwd_bwd");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for m in [128, 256, 1024, 4096] {
        let (z, labels) = batch(m);
        let fused = || {
            let loss = lacln(&z, &labels, TAU, BETA, true).unwrap();
            loss.backward().unwrap();
            z.zero_grad();
        };
        let composed = || {
            let loss = lacln_composed(&z, &labels, TAU, BETA).unwrap();
            loss.backward().unwrap();
            z.zero_grad();
        };
        group.bench_function(BenchmarkId::new("fused", m), |b| b.iter(fused));
        group.bench_function(BenchmarkId::new("composed", m), |b| b.iter(composed));
        let runs = if m >= 4096 { 3 } else { 10 };
        for (name, f) in [("fused", &fused as &dyn Fn()), ("composed", &composed)] {
            let t = common::best_times(runs, f);
            println!(
                "lacln fwd+bwd M={m} D={D} {name}: {:.2} ms wall, {:.2} ms CPU (best of {runs})",
                t.wall * 1e3,
                t.cpu * 1e3
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
