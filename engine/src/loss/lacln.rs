//! LACLN, the label-aware contrastive loss with hard-negative mining of CLCE, as one fused op
//! (METHOD.md, "LACLN, exactly"). With s_ij = z_i · z_j / τ:
//!
//!   m_i  = (1/|P(i)|) Σ_{p∈P(i)} e^{s_ip}                          mean positive
//!   w_ik = |N(i)| e^{β s_ik} / Σ_{k'∈N(i)} e^{β s_ik'}              hard-negative weight
//!   n_i  = Σ_{k∈N(i)} w_ik e^{s_ik}                                 weighted negatives
//!   L    = mean over anchors i with |P(i)| > 0 of  -log( m_i / (m_i + n_i) )
//!
//! Computed in log space: -log(m/(m+n)) = log(1 + n/m) = softplus(log n - log m), where
//! log m_i and log n_i are log-sum-exps over row i of S (see `Anchor`). A GPU tensor takes
//! the same steps in shaders/lacln.wgsl (the `LOSS == 0` branches), through `gpu.rs`.
use crate::autograd::BackwardOp;
use crate::{CpuStorage, Elem, Result, Tensor};

use super::gpu;
use super::pairwise::{
    check_inputs, cpu_values, features_grad, fill_rows, log_sum_exp, map_rows, role, scalar_output,
    sigmoid, similarity, softplus, split_row, Role, WeightedNegatives,
};

/// LACLN of L2-normalised features `z` [M, D] with class `labels`, as a scalar.
///
/// `hard_negatives = false` is the ablation `lacln-nohnm`: every w_ik = 1, which is exactly
/// the β = 0 case of the weights (|N(i)| · 1/|N(i)|), so the same code computes both.
pub fn lacln(
    z: &Tensor,
    labels: &[usize],
    tau: f64,
    beta: f64,
    hard_negatives: bool,
) -> Result<Tensor> {
    let (m, d) = check_inputs("lacln", z, labels, tau)?;
    let beta = if hard_negatives { beta } else { 0.0 };
    if z.device().is_gpu() {
        return gpu::forward(gpu::Loss::Lacln { beta }, z, labels, tau);
    }
    match cpu_values(z)? {
        CpuStorage::F32(zs) => forward(z, &zs, (m, d), labels, tau, beta),
        CpuStorage::F64(zs) => forward(z, &zs, (m, d), labels, tau, beta),
        CpuStorage::F16(_) => unreachable!("F16 reaches only the rules that read f16"),
    }
}

/// The log-space statistics of one anchor i, read off row i of S.
#[derive(Clone, Copy, Debug)]
struct Anchor<T> {
    /// |P(i)|; the anchor is skipped (not counted in the mean) when it is 0.
    positives: usize,
    /// log Σ_{p∈P(i)} e^{s_ip}
    lse_positives: T,
    negatives: WeightedNegatives<T>,
}

impl<T: Elem> Anchor<T> {
    fn of(row: &[T], labels: &[usize], i: usize, beta: T) -> Self {
        let (positives, negatives) = split_row(row, labels, i);
        Anchor {
            positives: positives.len(),
            lse_positives: log_sum_exp(&positives, T::one()),
            negatives: WeightedNegatives::of(&negatives, beta),
        }
    }

    fn counted(&self) -> bool {
        self.positives > 0
    }

    /// u_i = log n_i - log m_i, so that ℓ_i = softplus(u_i). -inf when N(i) is empty
    /// (n_i = 0): then ℓ_i = 0 and its gradient is 0.
    fn log_ratio(&self) -> T {
        let log_m = self.lse_positives - T::c(self.positives as f64).ln();
        let log_mean_neg = self.negatives.log_weighted_mean();
        if log_mean_neg == T::neg_infinity() {
            return log_mean_neg;
        }
        let log_n = T::c(self.negatives.count as f64).ln() + log_mean_neg;
        log_n - log_m
    }

    /// ℓ_i = -log(m_i / (m_i + n_i)).
    fn loss(&self) -> T {
        softplus(self.log_ratio())
    }
}

fn forward<T: Elem>(
    z: &Tensor,
    zs: &[T],
    (m, d): (usize, usize),
    labels: &[usize],
    tau: f64,
    beta: f64,
) -> Result<Tensor> {
    let s = similarity(zs, m, d, tau);
    let anchors = map_rows(&s, m, |i, row| Anchor::of(row, labels, i, T::c(beta)));
    let counted = anchors.iter().filter(|a| a.counted()).count();
    let total: T = anchors
        .iter()
        .filter(|a| a.counted())
        .map(Anchor::loss)
        .sum();
    // No anchor with a positive: nothing to pull together, the loss is 0 with zero gradient.
    let loss = if counted == 0 {
        T::zero()
    } else {
        total / T::c(counted as f64)
    };
    let saved = LaclnBackward {
        labels: labels.to_vec(),
        tau,
        beta,
        similarity: s,
        anchors,
        counted,
    };
    scalar_output(loss, saved, z)
}

/// What the backward pass needs: S and every anchor's statistics (M×M + O(M) values).
struct LaclnBackward<T> {
    labels: Vec<usize>,
    tau: f64,
    beta: f64,
    similarity: Vec<T>,
    anchors: Vec<Anchor<T>>,
    /// A, the number of anchors in the mean.
    counted: usize,
}

// dL/dS, the gradient with respect to the similarities.
//
// For a counted anchor i write u_i = log n_i - log m_i, so ℓ_i = softplus(u_i), with
//   log m_i = log Σ_{p∈P(i)} e^{s_ip} - log|P(i)|
//   log n_i = log|N(i)| + log Σ_{k∈N(i)} e^{(1+β)s_ik} - log Σ_{k∈N(i)} e^{β s_ik}
// (substituting w_ik into n_i). L = (1/A) Σ_i ℓ_i, so with c_i = σ(u_i) / A = n_i/(m_i+n_i) / A:
//   ∂L/∂s_ip = -c_i a_ip                      p ∈ P(i),  a_ip = e^{s_ip} / Σ_{p'∈P(i)} e^{s_ip'}
//   ∂L/∂s_ik =  c_i ((1+β) π_ik - β q_ik)     k ∈ N(i),  π_ik = e^{(1+β)s_ik} / Σ_{k'} e^{(1+β)s_ik'}
//                                                         = w_ik e^{s_ik} / n_i
//                                                        q_ik = e^{β s_ik} / Σ_{k'} e^{β s_ik'}
//                                                         = w_ik / |N(i)|
//   ∂L/∂s_ii = 0.
// The -β q_ik term is the gradient through the weights w_ik (not detached); with β = 0
// (no hard-negative mining) it vanishes and π is the softmax of s over N(i).
// Skipped anchors (no positive) have zero rows; an anchor with no negatives has u_i = -inf,
// so c_i = 0 and a zero row too. ℓ_i depends on row i of S only, so row i of dL/dS is all
// of anchor i's gradient, and S = z zᵀ / τ sends it to z as (G + Gᵀ) z / τ.
impl<T: Elem> LaclnBackward<T> {
    fn grad_similarity(&self) -> Vec<T> {
        let m = self.labels.len();
        let beta = T::c(self.beta);
        let a = T::c(self.counted.max(1) as f64);
        fill_rows(&self.similarity, m, |i, s_row, g_row| {
            let anchor = &self.anchors[i];
            if !anchor.counted() {
                return;
            }
            let c = sigmoid(anchor.log_ratio()) / a;
            if c == T::zero() {
                return;
            }
            for (j, (g, &s)) in g_row.iter_mut().zip(s_row).enumerate() {
                *g = match role(&self.labels, i, j) {
                    Role::Itself => T::zero(),
                    Role::Positive => -c * (s - anchor.lse_positives).exp(),
                    Role::Negative => c * anchor.negatives.d_log_weighted_mean(s, beta),
                };
            }
        })
    }
}

impl<T: Elem> BackwardOp for LaclnBackward<T> {
    fn name(&self) -> &'static str {
        "lacln"
    }
    fn saves_output(&self) -> bool {
        false
    }
    fn backward(
        &self,
        inputs: &[Tensor],
        _output: &Tensor,
        grad_output: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let g = self.grad_similarity();
        Ok(vec![Some(features_grad(
            &g,
            &inputs[0],
            self.tau,
            grad_output,
        )?)])
    }
}
