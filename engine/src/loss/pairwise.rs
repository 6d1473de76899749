//! What the contrastive losses (LACLN, SupCon, H-SCL) share: the similarity matrix
//! S = z zᵀ / τ, who is a positive or a negative of an anchor, log-sum-exp over such a set,
//! the hard-negative-weighted sum of an anchor's negatives, and the way back from dL/dS to dL/dz.
//!
//! Each loss is one fused op over S: a forward kernel that reduces every row of S (one anchor)
//! to a few log-space statistics, and a backward kernel that turns those statistics into
//! dL/dS in closed form. The tape records one op, not the dozen M×M intermediates a composed
//! loss would: the backward keeps only S (M×M) and O(M) statistics per loss.
use rayon::prelude::*;

use crate::ops::matmul::cpu::gemm;
use crate::ops::CPU_PAR_MIN;
use crate::{ensure_shape, CpuStorage, Elem, Error, Result, Shape, Tensor};

/// Checks the inputs every contrastive loss takes: z [M, D], one label per row, τ > 0.
pub(crate) fn check_inputs(
    op: &'static str,
    z: &Tensor,
    labels: &[usize],
    tau: f64,
) -> Result<(usize, usize)> {
    ensure_shape!(
        z.rank() == 2,
        op,
        "features must be [M, D], got {:?}",
        z.shape()
    );
    let (m, d) = (z.dims()[0], z.dims()[1]);
    ensure_shape!(
        labels.len() == m,
        op,
        "{} labels for {m} feature rows",
        labels.len()
    );
    if !(tau.is_finite() && tau > 0.0) {
        return Err(Error::invalid(
            op,
            format!("temperature tau must be > 0, got {tau}"),
        ));
    }
    Ok((m, d))
}

/// z's values on the CPU, where these fused kernels run (a GPU tensor goes to `gpu.rs`
/// instead and never gets here).
pub(crate) fn cpu_values(z: &Tensor) -> Result<CpuStorage> {
    z.to_cpu_storage()
}

/// How sample j relates to anchor i.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// j = i: never part of any set.
    Itself,
    /// j ∈ P(i): same label, another sample.
    Positive,
    /// j ∈ N(i): another label.
    Negative,
}

pub(crate) fn role(labels: &[usize], i: usize, j: usize) -> Role {
    if i == j {
        Role::Itself
    } else if labels[i] == labels[j] {
        Role::Positive
    } else {
        Role::Negative
    }
}

/// S = z zᵀ / τ, row-major [M, M], on the engine's CPU matmul.
pub(crate) fn similarity<T: Elem>(z: &[T], m: usize, d: usize, tau: f64) -> Vec<T> {
    let mut s = vec![T::zero(); m * m];
    gemm((m, d, m), z, false, z, true, &mut s, false, true);
    let inv_tau = T::c(1.0 / tau);
    s.iter_mut().for_each(|v| *v *= inv_tau);
    s
}

/// `f(i, row i of S)` for every anchor i, in parallel when S is large.
pub(crate) fn map_rows<T: Elem, R: Send>(
    s: &[T],
    m: usize,
    f: impl Fn(usize, &[T]) -> R + Sync,
) -> Vec<R> {
    if m * m >= CPU_PAR_MIN {
        s.par_chunks(m).enumerate().map(|(i, r)| f(i, r)).collect()
    } else {
        s.chunks(m).enumerate().map(|(i, r)| f(i, r)).collect()
    }
}

/// Fills row i of dL/dS with `f(i, row i of S, row i of dL/dS)`, in parallel when S is large.
pub(crate) fn fill_rows<T: Elem>(
    s: &[T],
    m: usize,
    f: impl Fn(usize, &[T], &mut [T]) + Sync,
) -> Vec<T> {
    let mut g = vec![T::zero(); m * m];
    if m * m >= CPU_PAR_MIN {
        g.par_chunks_mut(m)
            .zip(s.par_chunks(m))
            .enumerate()
            .for_each(|(i, (g, s))| f(i, s, g));
    } else {
        g.chunks_mut(m)
            .zip(s.chunks(m))
            .enumerate()
            .for_each(|(i, (g, s))| f(i, s, g));
    }
    g
}

/// Row i of S split into the similarities of i's positives and of its negatives.
pub(crate) fn split_row<T: Elem>(row: &[T], labels: &[usize], i: usize) -> (Vec<T>, Vec<T>) {
    let (mut positives, mut negatives) = (Vec::new(), Vec::new());
    for (j, &s) in row.iter().enumerate() {
        match role(labels, i, j) {
            Role::Itself => {}
            Role::Positive => positives.push(s),
            Role::Negative => negatives.push(s),
        }
    }
    (positives, negatives)
}

/// log Σ_j exp(scale · values[j]), shifted by the largest term so that no exp overflows (at
/// τ = 0.07, s reaches 14.3 and (1+β)s twice that). An empty set gives -inf, the log of an
/// empty sum.
pub(crate) fn log_sum_exp<T: Elem>(values: &[T], scale: T) -> T {
    let max = values
        .iter()
        .fold(T::neg_infinity(), |m, &v| m.max_nan(scale * v));
    if max == T::neg_infinity() {
        return max;
    }
    max + values
        .iter()
        .map(|&v| (scale * v - max).exp())
        .sum::<T>()
        .ln()
}

/// log(1 + e^u) without overflow; 0 at u = -inf.
pub(crate) fn softplus<T: Elem>(u: T) -> T {
    u.max_nan(T::zero()) + (-u.abs()).exp().ln_1p()
}

/// 1 / (1 + e^-u), the derivative of softplus; 0 at u = -inf.
pub(crate) fn sigmoid<T: Elem>(u: T) -> T {
    if u >= T::zero() {
        T::one() / (T::one() + (-u).exp())
    } else {
        let e = u.exp();
        e / (T::one() + e)
    }
}

/// An anchor's negatives weighted by hard-negative weights q_ik = softmax_{k∈N(i)}(β s_ik):
/// log Σ_k q_ik e^{s_ik} = log Σ_k e^{(1+β)s_ik} - log Σ_k e^{β s_ik}.
/// (LACLN's w_ik is |N(i)| q_ik; H-SCL uses q_ik itself. β = 0 gives the plain mean.)
#[derive(Clone, Copy, Debug)]
pub(crate) struct WeightedNegatives<T> {
    /// log Σ_{k∈N(i)} e^{β s_ik}
    lse_beta: T,
    /// log Σ_{k∈N(i)} e^{(1+β) s_ik}
    lse_weighted: T,
    pub count: usize,
}

impl<T: Elem> WeightedNegatives<T> {
    /// From the anchor's similarities s_ik to its negatives.
    pub fn of(negatives: &[T], beta: T) -> Self {
        WeightedNegatives {
            lse_beta: log_sum_exp(negatives, beta),
            lse_weighted: log_sum_exp(negatives, T::one() + beta),
            count: negatives.len(),
        }
    }

    /// log Σ_k q_ik e^{s_ik}; -inf when the anchor has no negative (an empty sum).
    pub fn log_weighted_mean(&self) -> T {
        if self.count == 0 {
            // Both log-sums are -inf here, and -inf - -inf would be NaN.
            return T::neg_infinity();
        }
        self.lse_weighted - self.lse_beta
    }

    /// ∂/∂s_ik of log Σ_k' q_ik' e^{s_ik'} for a negative k, with s = s_ik:
    /// (1+β) π_ik - β q_ik, where π_ik = e^{(1+β)s_ik} / Σ_k' e^{(1+β)s_ik'} is k's share of
    /// the weighted sum and q_ik its hard-negative weight. The -β q_ik term is the gradient
    /// through the weights' normaliser: the weights are not detached.
    pub fn d_log_weighted_mean(&self, s: T, beta: T) -> T {
        let share = ((T::one() + beta) * s - self.lse_weighted).exp();
        let weight = (beta * s - self.lse_beta).exp();
        (T::one() + beta) * share - beta * weight
    }
}

/// dL/dz for S = z zᵀ / τ given G = dL/dS (row-major [M, M]): dz = (G + Gᵀ) z / τ, times
/// the upstream gradient of the scalar loss. Computed as G z + Gᵀ z (the transpose is a
/// stride, not a copy).
pub(crate) fn features_grad<T: Elem>(
    g: &[T],
    z: &Tensor,
    tau: f64,
    grad_output: &Tensor,
) -> Result<Tensor> {
    let (m, d) = (z.dims()[0], z.dims()[1]);
    let scale = T::c(grad_output.to_scalar()? / tau);
    let zs = cpu_values(z)?;
    let zs = zs.as_slice::<T>();
    let mut dz = vec![T::zero(); m * d];
    gemm((m, m, d), g, false, zs, false, &mut dz, false, true);
    gemm((m, m, d), g, true, zs, false, &mut dz, true, true);
    dz.iter_mut().for_each(|v| *v *= scale);
    Tensor::from_vec(dz, z.shape().clone(), z.device())
}

/// The scalar loss value, on z's device, as the output of the recorded op `op`.
pub(crate) fn scalar_output<T: Elem>(
    value: T,
    op: impl crate::autograd::BackwardOp + 'static,
    z: &Tensor,
) -> Result<Tensor> {
    let storage = Tensor::from_vec(vec![value], Shape::scalar(), z.device())?
        .storage()
        .clone();
    Ok(Tensor::from_op(
        storage,
        Shape::scalar(),
        z.device().clone(),
        op,
        vec![z.clone()],
    ))
}
