//! SupCon (Khosla et al. 2020, "L^sup_out"), every view an anchor, as one fused op:
//!
//!   L = mean over anchors i with |P(i)| > 0 of
//!       -(1/|P(i)|) Σ_{p∈P(i)} [ s_ip - log Σ_{a≠i} e^{s_ia} ]
//!
//! The original multiplies by τ / base_τ; we use factor 1 (METHOD.md).
use crate::autograd::BackwardOp;
use crate::{CpuStorage, Elem, Result, Tensor};

use super::gpu;
use super::pairwise::{
    check_inputs, cpu_values, features_grad, fill_rows, log_sum_exp, map_rows, role, scalar_output,
    similarity, split_row, Role,
};

/// SupCon of L2-normalised features `z` [M, D] with class `labels`, as a scalar.
pub fn supcon(z: &Tensor, labels: &[usize], tau: f64) -> Result<Tensor> {
    let (m, d) = check_inputs("supcon", z, labels, tau)?;
    if z.device().is_gpu() {
        return gpu::forward(gpu::Loss::SupCon, z, labels, tau);
    }
    match cpu_values(z)? {
        CpuStorage::F32(zs) => forward(z, &zs, (m, d), labels, tau),
        CpuStorage::F64(zs) => forward(z, &zs, (m, d), labels, tau),
        CpuStorage::F16(_) => unreachable!("F16 reaches only the rules that read f16"),
    }
}

#[derive(Clone, Copy, Debug)]
struct Anchor<T> {
    positives: usize,
    /// Σ_{p∈P(i)} s_ip
    sum_positives: T,
    /// log Σ_{a≠i} e^{s_ia}, the denominator over every other view.
    lse_others: T,
}

impl<T: Elem> Anchor<T> {
    fn of(row: &[T], labels: &[usize], i: usize) -> Self {
        let (positives, negatives) = split_row(row, labels, i);
        Anchor {
            positives: positives.len(),
            sum_positives: positives.iter().copied().sum(),
            lse_others: log_sum_exp(&[positives, negatives].concat(), T::one()),
        }
    }

    fn counted(&self) -> bool {
        self.positives > 0
    }

    fn loss(&self) -> T {
        self.lse_others - self.sum_positives / T::c(self.positives as f64)
    }
}

fn forward<T: Elem>(
    z: &Tensor,
    zs: &[T],
    (m, d): (usize, usize),
    labels: &[usize],
    tau: f64,
) -> Result<Tensor> {
    let s = similarity(zs, m, d, tau);
    let anchors = map_rows(&s, m, |i, row| Anchor::of(row, labels, i));
    let counted = anchors.iter().filter(|a| a.counted()).count();
    let total: T = anchors
        .iter()
        .filter(|a| a.counted())
        .map(Anchor::loss)
        .sum();
    let loss = if counted == 0 {
        T::zero()
    } else {
        total / T::c(counted as f64)
    };
    let saved = SupConBackward {
        labels: labels.to_vec(),
        tau,
        similarity: s,
        anchors,
        counted,
    };
    scalar_output(loss, saved, z)
}

struct SupConBackward<T> {
    labels: Vec<usize>,
    tau: f64,
    similarity: Vec<T>,
    anchors: Vec<Anchor<T>>,
    counted: usize,
}

// dL/dS: ℓ_i = log Σ_{a≠i} e^{s_ia} - (1/|P(i)|) Σ_p s_ip, so for j ≠ i
//   ∂L/∂s_ij = (1/A) ( softmax_{a≠i}(s_ia)_j - [j ∈ P(i)] / |P(i)| ),
// with A the number of counted anchors; skipped anchors have zero rows.
impl<T: Elem> SupConBackward<T> {
    fn grad_similarity(&self) -> Vec<T> {
        let m = self.labels.len();
        let a = T::c(self.counted.max(1) as f64);
        fill_rows(&self.similarity, m, |i, s_row, g_row| {
            let anchor = &self.anchors[i];
            if !anchor.counted() {
                return;
            }
            let pull = T::one() / T::c(anchor.positives as f64);
            for (j, (g, &s)) in g_row.iter_mut().zip(s_row).enumerate() {
                let softmax = (s - anchor.lse_others).exp();
                *g = match role(&self.labels, i, j) {
                    Role::Itself => T::zero(),
                    Role::Positive => (softmax - pull) / a,
                    Role::Negative => softmax / a,
                };
            }
        })
    }
}

impl<T: Elem> BackwardOp for SupConBackward<T> {
    fn name(&self) -> &'static str {
        "supcon"
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
