//! H-SCL (Jiang et al. 2022, hard-negative supervised contrastive loss) as one fused op, one
//! term per positive pair (i, p), averaged over all pairs:
//!
//!   ℓ_ip = -log( e^{s_ip} / ( e^{s_ip} + (M-2) Σ_{k∈N(i)} q_ik e^{s_ik} ) ),
//!   q_ik = softmax_{k∈N(i)}(β s_ik)
//!
//! In log space ℓ_ip = softplus(log g_i - s_ip) with g_i = (M-2) Σ_k q_ik e^{s_ik}, the same
//! hard-negative-weighted sum as LACLN's n_i up to the constant in front.
use crate::autograd::BackwardOp;
use crate::{CpuStorage, Elem, Result, Tensor};

use super::gpu;
use super::pairwise::{
    check_inputs, cpu_values, features_grad, fill_rows, map_rows, role, scalar_output, sigmoid,
    similarity, softplus, split_row, Role, WeightedNegatives,
};

/// H-SCL of L2-normalised features `z` [M, D] with class `labels`, as a scalar.
pub fn hscl(z: &Tensor, labels: &[usize], tau: f64, beta: f64) -> Result<Tensor> {
    let (m, d) = check_inputs("hscl", z, labels, tau)?;
    if z.device().is_gpu() {
        return gpu::forward(gpu::Loss::Hscl { beta }, z, labels, tau);
    }
    match cpu_values(z)? {
        CpuStorage::F32(zs) => forward(z, &zs, (m, d), labels, tau, beta),
        CpuStorage::F64(zs) => forward(z, &zs, (m, d), labels, tau, beta),
        CpuStorage::F16(_) => unreachable!("F16 reaches only the rules that read f16"),
    }
}

#[derive(Clone, Copy, Debug)]
struct Anchor<T> {
    positives: usize,
    /// log g_i; -inf when g_i = 0 (no negatives, or M = 2), which makes every ℓ_ip 0.
    log_negatives: T,
    negatives: WeightedNegatives<T>,
    /// Σ_{p∈P(i)} ℓ_ip, the anchor's share of the loss before the mean over pairs.
    loss: T,
}

impl<T: Elem> Anchor<T> {
    fn of(row: &[T], labels: &[usize], i: usize, beta: T) -> Self {
        let m = labels.len();
        let (positives, negatives) = split_row(row, labels, i);
        let negatives = WeightedNegatives::of(&negatives, beta);
        let log_mean = negatives.log_weighted_mean();
        let log_negatives = if m <= 2 || log_mean == T::neg_infinity() {
            T::neg_infinity()
        } else {
            T::c((m - 2) as f64).ln() + log_mean
        };
        let loss = positives
            .iter()
            .map(|&s_ip| softplus(log_ratio(log_negatives, s_ip)))
            .sum();
        Anchor {
            positives: positives.len(),
            log_negatives,
            negatives,
            loss,
        }
    }
}

/// log g_i - s_ip, so that ℓ_ip = softplus of it.
fn log_ratio<T: Elem>(log_negatives: T, s_ip: T) -> T {
    log_negatives - s_ip
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
    let pairs: usize = anchors.iter().map(|a| a.positives).sum();
    let loss = if pairs == 0 {
        T::zero()
    } else {
        anchors.iter().map(|a| a.loss).sum::<T>() / T::c(pairs as f64)
    };
    let saved = HsclBackward {
        labels: labels.to_vec(),
        tau,
        beta,
        similarity: s,
        anchors,
        pairs,
    };
    scalar_output(loss, saved, z)
}

struct HsclBackward<T> {
    labels: Vec<usize>,
    tau: f64,
    beta: f64,
    similarity: Vec<T>,
    anchors: Vec<Anchor<T>>,
    /// The number of positive pairs in the mean.
    pairs: usize,
}

// dL/dS: with ρ_ip = σ(log g_i - s_ip), the derivative of softplus, and T pairs in the mean,
//   ∂L/∂s_ip = -ρ_ip / T                                                   p ∈ P(i)
//   ∂L/∂s_ik = (Σ_{p∈P(i)} ρ_ip / T) ((1+β) π_ik - β q_ik)                 k ∈ N(i)
// where the last factor is ∂ log g_i / ∂ s_ik (see `WeightedNegatives`; q is not detached).
impl<T: Elem> HsclBackward<T> {
    fn grad_similarity(&self) -> Vec<T> {
        let m = self.labels.len();
        let beta = T::c(self.beta);
        let pairs = T::c(self.pairs.max(1) as f64);
        fill_rows(&self.similarity, m, |i, s_row, g_row| {
            let anchor = &self.anchors[i];
            let rho = |s_ip: T| sigmoid(log_ratio(anchor.log_negatives, s_ip)) / pairs;
            let positive = |j| role(&self.labels, i, j) == Role::Positive;
            let push: T = (0..m).filter(|&p| positive(p)).map(|p| rho(s_row[p])).sum();
            if push == T::zero() {
                return;
            }
            for (j, (g, &s)) in g_row.iter_mut().zip(s_row).enumerate() {
                *g = match role(&self.labels, i, j) {
                    Role::Itself => T::zero(),
                    Role::Positive => -rho(s),
                    Role::Negative => push * anchor.negatives.d_log_weighted_mean(s, beta),
                };
            }
        })
    }
}

impl<T: Elem> BackwardOp for HsclBackward<T> {
    fn name(&self) -> &'static str {
        "hscl"
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
