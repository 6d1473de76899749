//! Optimiser tests against arithmetic written out by hand for tiny parameters.
mod adamw;
mod clip;
mod gpu;
mod groups;
mod guard;
mod schedule;
mod sgd;
mod state;

use crate::{DType, Device, Tensor};

/// A trainable f64 vector.
fn param(v: &[f64]) -> Tensor {
    Tensor::from_f64_slice(v, [v.len()], DType::F64, &Device::Cpu)
        .unwrap()
        .set_requires_grad(true)
}

/// Gives `p` exactly the gradient `g` through a real backward pass (d/dp sum(p * g) = g).
fn set_grad(p: &Tensor, g: &[f64]) {
    p.zero_grad();
    let c = Tensor::from_f64_slice(g, p.shape().clone(), p.dtype(), p.device()).unwrap();
    p.mul(&c).unwrap().sum_all().unwrap().backward().unwrap();
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_vec_f64().unwrap()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{got:?} vs {want:?}"
        );
    }
}
