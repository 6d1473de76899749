//! sgemm throughput: the engine's CPU matmul (the `gemm` crate) beside a hand-written
//! blocked kernel (benches/hand_sgemm), square f32 matrices at 512, 1024 and 2048.
//! Criterion's throughput is set to 2·n³ elements, so its "elem/s" reads as FLOP/s; each
//! size also prints the best of a few timed runs (by wall and by CPU time, see
//! benches/common), the figures BENCHMARKS.md compares with numpy's.
// Shared with the other benches; this one does not use them all.
#[allow(dead_code)]
mod common;
mod hand_sgemm;

use std::time::Duration;

use clce::engine::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const SIZES: [usize; 3] = [512, 1024, 2048];

fn random(n: usize, seed: u64) -> Tensor {
    Tensor::randn([n, n], 1.0, seed, DType::F32, &Device::Cpu).unwrap()
}

/// The hand-written kernel against the engine on one product, edges included.
fn check_agreement(m: usize, k: usize, n: usize) {
    let cpu = &Device::Cpu;
    let a = Tensor::randn([m, k], 1.0, 1, DType::F32, cpu).unwrap();
    let b = Tensor::randn([k, n], 1.0, 2, DType::F32, cpu).unwrap();
    let mut hand = vec![0.0f32; m * n];
    let (av, bv) = (a.to_vec_f32().unwrap(), b.to_vec_f32().unwrap());
    hand_sgemm::sgemm(m, k, n, &av, &bv, &mut hand);
    let engine = a.matmul(&b).unwrap().to_vec_f32().unwrap();
    let worst = engine
        .iter()
        .zip(&hand)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(
        worst < 1e-3 * (k as f32).sqrt(),
        "{m}x{k}x{n}: kernels disagree by {worst}"
    );
}

fn bench(c: &mut Criterion) {
    // The two kernels must agree before their speeds mean anything.
    for (m, k, n) in [(1, 1, 1), (131, 300, 45), (97, 513, 1031)] {
        check_agreement(m, k, n);
    }
    let mut group = c.benchmark_group("sgemm");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for n in SIZES {
        let (a, b) = (random(n, 1), random(n, 2));
        let (av, bv) = (a.to_vec_f32().unwrap(), b.to_vec_f32().unwrap());
        let mut out = vec![0.0f32; n * n];
        group.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
        group.bench_function(BenchmarkId::new("engine_gemm_crate", n), |bench| {
            bench.iter(|| a.matmul(&b).unwrap())
        });
        group.bench_function(BenchmarkId::new("hand_blocked", n), |bench| {
            bench.iter(|| hand_sgemm::sgemm(n, n, n, &av, &bv, &mut out))
        });
        let runs = if n >= 2048 { 3 } else { 10 };
        let flops = 2.0 * (n as f64).powi(3);
        let engine = common::best_rates(flops, runs, || drop(a.matmul(&b).unwrap()));
        let hand = common::best_rates(flops, runs, || {
            hand_sgemm::sgemm(n, n, n, &av, &bv, &mut out)
        });
        println!("sgemm n={n} engine (gemm crate): {engine} (best of {runs})");
        println!("sgemm n={n} hand-written blocked: {hand} (best of {runs})");
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
