//! sgemm throughput: the engine's CPU matmul (the `gemm` crate) beside a hand-written
//! blocked kernel (benches/hand_sgemm), square f32 matrices at 512, 1024 and 2048.
//! Criterion's throughput is set to 2·n³ elements, so its "elem/s" reads as FLOP/s; each
//! size also prints the best of a few timed runs (by wall and by CPU time, see
//! benches/common), the figures BENCHMARKS.md compares with numpy's.
mod common;
mod hand_sgemm;

use std::time::Duration;

use clce::engine::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const SIZES: [usize; 3] = [512, 1024, 2048];

fn random(n: usize, seed: u64) -> Tensor {
    Tensor::randn([n, n], 1.0, seed, DType::F32, &Device::Cpu).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgemm");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for n in SIZES {
        let (a, b) = (random(n, 1), random(n, 2));
        let (av, bv) = (a.to_vec_f32().unwrap(), b.to_vec_f32().unwrap());
        let mut out = vec![0.0f32; n * n];
        // The two kernels must agree before their speeds mean anything.
        hand_sgemm::sgemm(n, n, n, &av, &bv, &mut out);
        let engine = a.matmul(&b).unwrap().to_vec_f32().unwrap();
        let worst = engine
            .iter()
            .zip(&out)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(
            worst < 1e-3 * (n as f32).sqrt(),
            "kernels disagree by {worst}"
        );

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
