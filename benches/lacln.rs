//! Fused LACLN (one op, closed-form dL/dS) against LACLN composed from generic ops, forward
//! and backward, in f32 with D = 128: on the CPU for M in {128, 256, 1024, 4096} views, and
//! on `gpu:0` (CLCE_DEVICE=gpu:N picks another) when an adapter opens, for the same M, or
//! M ≤ 1024 on a software adapter (lavapipe), where 4096 would take many minutes.
//!
//! cargo bench --bench lacln            # both
//! cargo bench --bench lacln -- cpu     # or -- gpu: one of them
//!
//! Beside criterion's report it prints, per size and version, the best wall time and the best
//! CPU time (all threads) of one forward + backward (see common/mod.rs for why both). A GPU
//! iteration waits for the device, so its time is the kernels', not the queueing's.
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

/// L2-normalised random features [m, D] on `device` that record gradients, and the labels
/// of two views of m/2 images in m/8 classes. The values do not depend on the device.
fn batch(m: usize, device: &Device) -> (Tensor, Vec<usize>) {
    let x = Tensor::randn([m, D], 1.0, m as u64, DType::F32, &Device::Cpu).unwrap();
    let z = x.l2_normalize(-1, 1e-12).unwrap().detach();
    let labels = (0..m).map(|i| (i % (m / 2)) % (m / 8)).collect();
    (z.to_device(device).unwrap().set_requires_grad(true), labels)
}

/// Whether the command line's filter (criterion's first free argument, taken here as a plain
/// substring) selects `group`: the extra timings below cost minutes, so they run only for the
/// benchmarks asked for.
fn selected(group: &str) -> bool {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-') && a != "bench");
    filter.is_none_or(|f| group.contains(&f))
}

/// Benchmarks fused against composed LACLN on `device` for each M, in the group `name`.
fn fused_against_composed(c: &mut Criterion, name: &str, device: &Device, sizes: &[usize]) {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let wait = || device.synchronize().unwrap();
    for &m in sizes {
        let (z, labels) = batch(m, device);
        let fused = || {
            let loss = lacln(&z, &labels, TAU, BETA, true).unwrap();
            loss.backward().unwrap();
            wait();
            z.zero_grad();
        };
        let composed = || {
            let loss = lacln_composed(&z, &labels, TAU, BETA).unwrap();
            loss.backward().unwrap();
            wait();
            z.zero_grad();
        };
        group.bench_function(BenchmarkId::new("fused", m), |b| b.iter(fused));
        group.bench_function(BenchmarkId::new("composed", m), |b| b.iter(composed));
        if !selected(name) {
            continue;
        }
        let runs = if (m >= 1024 && device.is_gpu()) || m >= 4096 {
            3
        } else {
            10
        };
        for (version, f) in [("fused", &fused as &dyn Fn()), ("composed", &composed)] {
            let t = common::best_times(runs, f);
            println!(
                "lacln fwd+bwd on {device} M={m} D={D} {version}: {:.2} ms wall, {:.2} ms CPU (best of {runs})",
                t.wall * 1e3,
                t.cpu * 1e3
            );
        }
    }
    group.finish();
}

fn cpu(c: &mut Criterion) {
    fused_against_composed(
        c,
        "lacln_fwd_bwd_cpu",
        &Device::Cpu,
        &[128, 256, 1024, 4096],
    );
}

fn gpu(c: &mut Criterion) {
    let device = match common::open_gpu() {
        Ok(d) => d,
        Err(e) => return eprintln!("lacln: no GPU to measure ({e})"),
    };
    let Device::Gpu(gpu) = &device else { return };
    let sizes: &[usize] = if gpu.info().is_software {
        &[128, 256, 1024]
    } else {
        &[128, 256, 1024, 4096]
    };
    fused_against_composed(c, "lacln_fwd_bwd_gpu", &device, sizes);
}

criterion_group!(benches, cpu, gpu);
criterion_main!(benches);
