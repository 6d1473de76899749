//! LACLN written with generic engine ops (matmul_t, exp, sum, div, log, ...), each recorded on
//! the tape, as a framework user would write it. It is what the fused `loss::lacln` op is
//! benchmarked against (benches/lacln.rs) and checked against (tests/lacln_composed.rs).
//!
//! It assumes every anchor has a positive and a negative (two views of at least two
//! classes); the fused op also handles the edge cases.
use clce::engine::{Result, Tensor};

/// LACLN of L2-normalised `z` [M, D]; see METHOD.md for the formula.
pub fn lacln_composed(z: &Tensor, labels: &[usize], tau: f64, beta: f64) -> Result<Tensor> {
    let m = labels.len();
    let mask = |keep: &dyn Fn(usize, usize) -> bool| {
        let v: Vec<f64> = (0..m * m)
            .map(|ij| f64::from(u8::from(keep(ij / m, ij % m))))
            .collect();
        Tensor::from_f64_slice(&v, [m, m], z.dtype(), z.device())
    };
    let positives = mask(&|i, j| i != j && labels[i] == labels[j])?;
    let negatives = mask(&|i, j| labels[i] != labels[j])?;
    let n_pos = positives.sum(-1, true)?;
    let n_neg = negatives.sum(-1, true)?;

    let s = z.matmul_t(z, false, true)?.mul_scalar(1.0 / tau)?;
    // Shift each row by its max (1/τ, the diagonal): it cancels in n_i / m_i.
    let shifted = s.sub(&s.max(-1, true)?.detach())?;
    let e = shifted.exp()?;
    let mean_positive = e.mul(&positives)?.sum(-1, true)?.div(&n_pos)?;
    let hardness = shifted.mul_scalar(beta)?.exp()?.mul(&negatives)?;
    let weights = hardness.div(&hardness.sum(-1, true)?)?.mul(&n_neg)?;
    let weighted_negatives = weights.mul(&e)?.sum(-1, true)?;
    // -log(m / (m + n)) = log(1 + n / m)
    weighted_negatives
        .div(&mean_positive)?
        .add_scalar(1.0)?
        .log()?
        .mean_all()
}
