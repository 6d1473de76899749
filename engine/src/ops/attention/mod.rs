//! Scaled dot-product attention with an additive bias on the scores, as one op:
//! S = scale · Q Kᵀ + bias, P = softmax(S) over each row, O = P V, for q, k, v of shape
//! [B, H, N, D] and a bias [H, N, N] shared by the batch (BEiT's relative position bias).
//! The backward is
//!   dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),
//!   dQ = scale · dS K,  dK = scale · dSᵀ Q,  dbias = Σ_B dS.
//! The CPU forward keeps P and the backward applies these formulas, both one (batch, head)
//! matrix per task (see cpu.rs). The GPU
//! runs fused kernels that never store P: the forward keeps each score row's logsumexp, and
//! the backward recomputes P from it (see gpu.rs).
mod cpu;
mod gpu;
#[cfg(test)]
mod tests;

use crate::autograd::BackwardOp;
use crate::memory::meta::AllocatorModel;
use crate::{ensure_shape, CpuStorage, Result, Storage, Tensor};

/// softmax(scale · q kᵀ + bias) v over the last two dimensions of [B, H, N, D] inputs.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    scale: f64,
) -> Result<Tensor> {
    ensure_shape!(
        q.rank() == 4,
        "attention",
        "q, k and v must be [B, H, N, D], got q {:?}",
        q.shape()
    );
    for t in [k, v] {
        q.check_same("attention", t)?;
        ensure_shape!(
            t.shape() == q.shape(),
            "attention",
            "q, k and v must have one shape, got q {:?}, k {:?}, v {:?}",
            q.shape(),
            k.shape(),
            v.shape()
        );
    }
    let [b, h, n, d] = [0, 1, 2, 3].map(|i| q.dims()[i]);
    if let Some(bias) = bias {
        q.check_same("attention", bias)?;
        ensure_shape!(
            bias.dims() == [h, n, n],
            "attention",
            "bias must be [H, N, N] = [{h}, {n}, {n}] for q {:?}, got {:?}",
            q.shape(),
            bias.shape()
        );
    }
    let dims = cpu::Dims { b, h, n, d };
    let device = q.device().clone();
    let tensor = |s, shape: &[usize]| Tensor::from_storage(s, shape.into(), device.clone());
    let bias_storage = bias.map(|t| t.storage());
    let (out, saved) = match (&*q.storage(), &*k.storage(), &*v.storage()) {
        (Storage::Cpu(q), Storage::Cpu(k), Storage::Cpu(v)) => {
            let bias = match bias_storage.as_deref() {
                None => None,
                Some(Storage::Cpu(s)) => Some(s),
                Some(_) => return Err(crate::storage::mixed_devices("attention")),
            };
            let (out, probs) = cpu::forward(q, k, v, bias, dims, scale);
            (
                Storage::Cpu(out),
                Saved::Probs(tensor(Storage::Cpu(probs), &[b, h, n, n])),
            )
        }
        (Storage::Gpu(q), Storage::Gpu(k), Storage::Gpu(v)) => {
            let bias = match bias_storage.as_deref() {
                None => None,
                Some(Storage::Gpu(s)) => Some(s),
                Some(_) => return Err(crate::storage::mixed_devices("attention")),
            };
            let (out, lse) = gpu::forward(q, k, v, bias, dims, scale)?;
            (
                Storage::Gpu(out),
                Saved::LogSumExp(tensor(Storage::Gpu(lse), &[b, h, n])),
            )
        }
        // What the planned-for device's kernels keep: the CPU the weights, a GPU the row
        // logsumexps.
        (Storage::Meta(q), Storage::Meta(_), Storage::Meta(_)) => {
            let saved = match q.device().model() {
                AllocatorModel::Cpu => {
                    let probs = q.output(b * h * n * n, "attention");
                    Saved::Probs(tensor(Storage::Meta(probs), &[b, h, n, n]))
                }
                AllocatorModel::Gpu { .. } => {
                    let lse = q.output(b * h * n, "attention row statistics");
                    Saved::LogSumExp(tensor(Storage::Meta(lse), &[b, h, n]))
                }
            };
            (Storage::Meta(q.like("attention")), saved)
        }
        _ => return Err(crate::storage::mixed_devices("attention")),
    };
    drop(bias_storage);
    let backward = AttentionBackward { saved, dims, scale };
    let mut inputs = vec![q.clone(), k.clone(), v.clone()];
    inputs.extend(bias.cloned());
    Ok(Tensor::from_op(
        out,
        q.shape().clone(),
        device,
        backward,
        inputs,
    ))
}

/// What the forward keeps for the backward.
enum Saved {
    /// CPU: the attention weights P = softmax(S), [B, H, N, N].
    Probs(Tensor),
    /// GPU: the logsumexp of each score row, L = log Σ_j exp(S_ij), [B, H, N]; with the
    /// output O (which backward receives anyway) it lets the kernels recompute P.
    LogSumExp(Tensor),
}

struct AttentionBackward {
    saved: Saved,
    dims: cpu::Dims,
    scale: f64,
}

impl BackwardOp for AttentionBackward {
    fn name(&self) -> &'static str {
        "attention"
    }
    /// q, k and v; the GPU kernels also recompute the scores from the bias and read the
    /// output, where the CPU saved the weights instead.
    fn saves_input(&self, index: usize) -> bool {
        index < 3 || self.fused()
    }
    fn saves_output(&self) -> bool {
        self.fused()
    }
    fn backward(&self, inputs: &[Tensor], out: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        match &self.saved {
            Saved::Probs(p) => self.backward_from_probs(inputs, out, p, g),
            Saved::LogSumExp(lse) => self.backward_fused(inputs, out, lse, g),
        }
    }
}

impl AttentionBackward {
    fn fused(&self) -> bool {
        matches!(self.saved, Saved::LogSumExp(_))
    }

    /// Which of q, k, v and the bias want a gradient.
    fn wanted(inputs: &[Tensor]) -> [bool; 4] {
        [0, 1, 2, 3].map(|i| inputs.get(i).is_some_and(|t| t.requires_grad()))
    }

    /// The gradients as the planner's allocations (dq, dk, dv like the output, and dbias),
    /// for a backward on the meta device.
    fn meta_grads(
        like: &crate::memory::meta::MetaStorage,
        inputs: &[Tensor],
        out: &Tensor,
    ) -> Vec<Option<Tensor>> {
        let wanted = Self::wanted(inputs);
        let grad = |i: usize, shape: &crate::Shape| {
            wanted[i].then(|| {
                let s = like.output(shape.numel(), "attention backward");
                Tensor::from_storage(Storage::Meta(s), shape.clone(), out.device().clone())
            })
        };
        let mut result = vec![
            grad(0, out.shape()),
            grad(1, out.shape()),
            grad(2, out.shape()),
        ];
        if let Some(bias) = inputs.get(3) {
            result.push(grad(3, bias.shape()));
        }
        result
    }

    /// The formulas of the module doc, one (batch, head) matrix per task (see cpu.rs).
    fn backward_from_probs(
        &self,
        inputs: &[Tensor],
        out: &Tensor,
        p: &Tensor,
        g: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let wanted = Self::wanted(inputs);
        let storages = [&inputs[0], &inputs[1], &inputs[2], p, g].map(|t| t.storage());
        let grads = match storages.each_ref().map(|s| &**s) {
            [Storage::Cpu(q), Storage::Cpu(k), Storage::Cpu(v), Storage::Cpu(p), Storage::Cpu(g)] => {
                cpu::backward(q, k, v, p, g, self.dims, self.scale, wanted[3])
            }
            [Storage::Meta(q), ..] => return Ok(Self::meta_grads(q, inputs, out)),
            _ => return Err(crate::storage::mixed_devices("attention backward")),
        };
        let tensor = |s: CpuStorage, shape: &crate::Shape| {
            Tensor::from_storage(Storage::Cpu(s), shape.clone(), out.device().clone())
        };
        let mut result = vec![
            wanted[0].then(|| tensor(grads.dq, out.shape())),
            wanted[1].then(|| tensor(grads.dk, out.shape())),
            wanted[2].then(|| tensor(grads.dv, out.shape())),
        ];
        if let Some(bias) = inputs.get(3) {
            result.push(grads.dbias.map(|s| tensor(s, bias.shape())));
        }
        Ok(result)
    }

    /// The GPU kernels, which recompute P from the row logsumexps.
    fn backward_fused(
        &self,
        inputs: &[Tensor],
        out: &Tensor,
        lse: &Tensor,
        g: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let cpu::Dims { b, h, n, .. } = self.dims;
        // δ_i = rowsum(dO ⊙ O) = Σ_j P_ij dP_ij, the softmax gradient's subtracted term,
        // packed after L so that the kernels read both from one buffer.
        let delta = g.mul(out)?.sum(-1, false)?;
        let stats = Tensor::concat(&[lse.reshape([b * h * n])?, delta.reshape([b * h * n])?], 0)?;
        let wanted = Self::wanted(inputs);
        if let Storage::Meta(q) = &*stats.storage() {
            return Ok(Self::meta_grads(q, inputs, out));
        }
        let storage = |t: &Tensor| t.gpu_storage("attention");
        let grads = gpu::backward(
            &storage(&inputs[0])?,
            &storage(&inputs[1])?,
            &storage(&inputs[2])?,
            inputs.get(3).map(storage).transpose()?.as_ref(),
            &storage(&stats)?,
            &storage(g)?,
            self.dims,
            self.scale,
            wanted,
        )?;
        let device = out.device();
        let tensor = |s: Option<crate::gpu::GpuStorage>, shape: &crate::Shape| {
            s.map(|s| Tensor::from_storage(Storage::Gpu(s), shape.clone(), device.clone()))
        };
        let mut result = vec![
            tensor(grads.dq, out.shape()),
            tensor(grads.dk, out.shape()),
            tensor(grads.dv, out.shape()),
        ];
        if let Some(bias) = inputs.get(3) {
            result.push(tensor(grads.dbias, bias.shape()));
        }
        Ok(result)
    }
}

pub(crate) fn gradcheck_cases() -> Vec<crate::gradcheck::Case> {
    use crate::gradcheck::Case;
    vec![
        Case::new(
            "attention",
            &[&[1, 3, 5, 7], &[1, 3, 5, 7], &[1, 3, 5, 7], &[3, 5, 5]],
            |x| attention(&x[0], &x[1], &x[2], Some(&x[3]), 0.4),
        ),
        Case::new(
            "attention",
            &[&[2, 1, 3, 2], &[2, 1, 3, 2], &[2, 1, 3, 2], &[1, 3, 3]],
            |x| attention(&x[0], &x[1], &x[2], Some(&x[3]), 1.0),
        ),
        Case::new(
            "attention",
            &[&[1, 1, 1, 1], &[1, 1, 1, 1], &[1, 1, 1, 1], &[1, 1, 1]],
            |x| attention(&x[0], &x[1], &x[2], Some(&x[3]), 0.5),
        ),
        Case::new(
            "attention_no_bias",
            &[&[2, 2, 3, 5], &[2, 2, 3, 5], &[2, 2, 3, 5]],
            |x| attention(&x[0], &x[1], &x[2], None, 1.0 / 5f64.sqrt()),
        ),
    ]
}
