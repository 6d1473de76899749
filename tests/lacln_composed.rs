//! The fused LACLN op agrees with LACLN composed from generic ops (value and gradient).
#[path = "../benches/common/lacln_composed.rs"]
mod lacln_composed;

use clce::engine::loss::lacln;
use clce::engine::{DType, Device, Tensor};
use lacln_composed::lacln_composed;

fn normalised(m: usize, d: usize, seed: u64, dtype: DType) -> Tensor {
    let x = Tensor::randn([m, d], 1.0, seed, DType::F64, &Device::Cpu).unwrap();
    let norm = x.mul(&x).unwrap().sum(-1, true).unwrap().sqrt().unwrap();
    x.div(&norm).unwrap().to_dtype(dtype).unwrap()
}

fn loss_and_grad(f: impl Fn(&Tensor) -> Tensor, z: &Tensor) -> (f64, Vec<f64>) {
    let z = z.detach().set_requires_grad(true);
    let loss = f(&z);
    loss.backward().unwrap();
    (
        loss.to_scalar().unwrap(),
        z.grad().unwrap().to_vec_f64().unwrap(),
    )
}

#[test]
fn fused_lacln_matches_the_composed_one() {
    // 2 views of 12 images in 5 classes.
    let labels: Vec<usize> = (0..24).map(|i| (i % 12) % 5).collect();
    for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-4)] {
        let z = normalised(24, 16, 5, dtype);
        for (tau, beta) in [(0.5, 1.0), (0.07, 2.0), (1.0, 0.0)] {
            let (fused, g_fused) =
                loss_and_grad(|z| lacln(z, &labels, tau, beta, true).unwrap(), &z);
            let (composed, g_composed) =
                loss_and_grad(|z| lacln_composed(z, &labels, tau, beta).unwrap(), &z);
            let what = format!("{dtype:?} tau={tau} beta={beta}");
            assert!(
                (fused - composed).abs() / composed.abs() < tol,
                "{what}: {fused} vs {composed}"
            );
            let diff: f64 = g_fused
                .iter()
                .zip(&g_composed)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
                .sqrt();
            let norm: f64 = g_composed.iter().map(|g| g * g).sum::<f64>().sqrt();
            assert!(
                diff / norm < tol,
                "{what}: gradients differ by {:.2e}",
                diff / norm
            );
        }
    }
}
