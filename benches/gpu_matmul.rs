//! GPU matmul throughput, C = op(A) · op(B), reported as GFLOP/s (2·m·k·n per product): f32
//! inputs, and f16-storage inputs (accumulated in f32) where the adapter has shader-f16.
//!
//! Sizes follow the adapter. A real GPU gets 1024², 2048², 4096² and the two big BEiT-base
//! products of a batch of 128 images (197 tokens, width 768), Y = X·W for the fused qkv
//! projection (W: 768 × 2304) and the MLP expansion (768 × 3072), each with the two products
//! of its backward pass: dX = dY·Wᵀ (25216 × 2304 × 768, B transposed) and dW = Xᵀ·dY
//! (768 × 25216 × 2304, A transposed). A software adapter (lavapipe) gets 256² and 512² and
//! the three BEiT products scaled down to 512 tokens and width 128.
//! Each iteration waits for the GPU, so the time is the kernel's, not the queueing's.
//! Run: `cargo bench --bench gpu_matmul` (CLCE_DEVICE=gpu:N picks another adapter).
// Shared with the other benches; this one does not use them all.
#[allow(dead_code)]
mod common;

use std::time::Duration;

use clce::engine::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// One product: op(A) is m × k, op(B) is k × n.
struct Product {
    name: String,
    m: usize,
    k: usize,
    n: usize,
    trans_a: bool,
    trans_b: bool,
}

/// Y = X·W with X: tokens × width and W: width × out, and its two gradient products.
fn linear_layer(name: &str, tokens: usize, width: usize, out: usize) -> [Product; 3] {
    let p = |suffix: &str, m, k, n, trans_a, trans_b| Product {
        name: format!("{name}{suffix}"),
        m,
        k,
        n,
        trans_a,
        trans_b,
    };
    [
        p("", tokens, width, out, false, false),
        p("_dx", tokens, out, width, false, true),
        p("_dw", width, tokens, out, true, false),
    ]
}

fn square(n: usize) -> Product {
    Product {
        name: "square".into(),
        m: n,
        k: n,
        n,
        trans_a: false,
        trans_b: false,
    }
}

fn products(software: bool) -> Vec<Product> {
    if software {
        let mut p = vec![square(256), square(512)];
        p.extend(linear_layer("beit_small", 512, 128, 384));
        return p;
    }
    let mut p = vec![square(1024), square(2048), square(4096)];
    p.extend(linear_layer("beit_qkv", 128 * 197, 768, 2304));
    p.extend(linear_layer("beit_mlp", 128 * 197, 768, 3072));
    p
}

fn matmul(c: &mut Criterion) {
    let device = match common::open_gpu() {
        Ok(d) => d,
        Err(e) => return eprintln!("gpu_matmul: nothing to measure ({e})"),
    };
    let Device::Gpu(gpu) = &device else { return };
    let software = gpu.info().is_software;
    let mut group = c.benchmark_group(format!("gpu_matmul/{}", gpu.info().name));
    if software {
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500));
    }
    // f16 storage (read as f16, accumulated in f32) where the adapter has shader-f16.
    let mut dtypes = vec![DType::F32];
    if gpu.has_shader_f16() {
        dtypes.push(DType::F16);
    }
    for p in products(software) {
        let shape = |rows, cols, trans| if trans { [cols, rows] } else { [rows, cols] };
        let a = Tensor::randn(shape(p.m, p.k, p.trans_a), 1.0, 1, DType::F32, &device).unwrap();
        let b = Tensor::randn(shape(p.k, p.n, p.trans_b), 1.0, 2, DType::F32, &device).unwrap();
        let flops = 2 * p.m * p.k * p.n;
        for &dtype in &dtypes {
            let (a, b) = (a.to_dtype(dtype).unwrap(), b.to_dtype(dtype).unwrap());
            let product = || {
                let c = a.matmul_t(&b, p.trans_a, p.trans_b).unwrap();
                device.synchronize().unwrap();
                c
            };
            // A direct figure first (criterion prints throughput as elem/s, here flop/s).
            let runs = if software { 2 } else { 10 };
            let seconds = common::best_times(runs, || drop(product())).wall;
            let label = format!("{}x{}x{}/{dtype:?}", p.m, p.k, p.n);
            println!(
                "{} {label} on {device}: {:.2} GFLOP/s ({:.2} ms, best of {runs})",
                p.name,
                flops as f64 / seconds / 1e9,
                seconds * 1e3
            );
            group.throughput(Throughput::Elements(flops as u64));
            group.bench_function(BenchmarkId::new(&p.name, &label), |bench| {
                bench.iter(product)
            });
        }
    }
    group.finish();
}

criterion_group!(benches, matmul);
criterion_main!(benches);
