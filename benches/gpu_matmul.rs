//! GPU matmul throughput, C = A · B in f32, reported as GFLOP/s (2·m·k·n per product).
//!
//! Sizes follow the adapter: a software one (lavapipe) gets 256² and 512² only; a real GPU
//! gets 1024², 2048², 4096² and the two big BEiT-base products of a batch of 128 images
//! (197 tokens, width 768): the fused qkv projection (× 2304) and the MLP expansion (× 3072).
//! Each iteration waits for the GPU, so the time is the kernel's, not the queueing's.
//! Run: `cargo bench --bench gpu_matmul` (CLCE_DEVICE=gpu:N picks another adapter).
use std::time::{Duration, Instant};

use clce::engine::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn device() -> Option<Device> {
    let index = std::env::var("CLCE_DEVICE")
        .ok()
        .and_then(|d| d.strip_prefix("gpu:").and_then(|i| i.parse().ok()))
        .unwrap_or(0);
    match Device::gpu(index) {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("gpu_matmul: nothing to measure ({e})");
            None
        }
    }
}

fn sizes(software: bool) -> Vec<(&'static str, usize, usize, usize)> {
    if software {
        return vec![("square", 256, 256, 256), ("square", 512, 512, 512)];
    }
    vec![
        ("square", 1024, 1024, 1024),
        ("square", 2048, 2048, 2048),
        ("square", 4096, 4096, 4096),
        ("beit_qkv", 128 * 197, 768, 2304),
        ("beit_mlp", 128 * 197, 768, 3072),
    ]
}

fn matmul(c: &mut Criterion) {
    let Some(device) = device() else { return };
    let Device::Gpu(gpu) = &device else { return };
    let software = gpu.info().is_software;
    let mut group = c.benchmark_group(format!("gpu_matmul/{}", gpu.info().name));
    if software {
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500));
    }
    for (name, m, k, n) in sizes(software) {
        let a = Tensor::randn([m, k], 1.0, 1, DType::F32, &device).unwrap();
        let b = Tensor::randn([k, n], 1.0, 2, DType::F32, &device).unwrap();
        let flops = 2 * m * k * n;
        let product = || {
            let c = a.matmul(&b).unwrap();
            device.synchronize().unwrap();
            c
        };
        // A direct figure first (criterion prints throughput as elem/s, here flop/s).
        product();
        let runs = if software { 2 } else { 10 };
        let start = Instant::now();
        for _ in 0..runs {
            product();
        }
        let seconds = start.elapsed().as_secs_f64() / runs as f64;
        println!(
            "{name} {m}x{k}x{n} on {device}: {:.2} GFLOP/s ({:.2} ms)",
            flops as f64 / seconds / 1e9,
            seconds * 1e3
        );
        group.throughput(Throughput::Elements(flops as u64));
        group.bench_function(BenchmarkId::new(name, format!("{m}x{k}x{n}")), |bench| {
            bench.iter(product)
        });
    }
    group.finish();
}

criterion_group!(benches, matmul);
criterion_main!(benches);
