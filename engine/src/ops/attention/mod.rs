//! Scaled dot-product attention with an additive bias on the scores, as one op:
//! S = scale · Q Kᵀ + bias, P = softmax(S) over each row, O = P V, for q, k, v of shape
//! [B, H, N, D] and a bias [H, N, N] shared by the batch (BEiT's relative position bias).
//! The forward keeps only P; the backward is
//!   dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),
//!   dQ = scale · dS K,  dK = scale · dSᵀ Q,  dbias = Σ_B dS.
mod cpu;
#[cfg(test)]
mod tests;

use crate::autograd::BackwardOp;
use crate::ops::softmax::softmax_grad;
use crate::{ensure_shape, Result, Storage, Tensor};

/// softmax(scale · q kᵀ + bias) v over the last two dimensions of [B, H, N, D] inputs.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    scale: f64,
) -> Result<Tensor> {
    crate::ops::ensure_cpu("attention", &[q, k, v])?;
    if let Some(b) = bias {
        crate::ops::ensure_cpu("attention", &[b])?;
    }
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
    let bias_storage = bias.map(|t| t.storage());
    let (out, probs) = match (&*q.storage(), &*k.storage(), &*v.storage()) {
        (Storage::Cpu(q), Storage::Cpu(k), Storage::Cpu(v)) => {
            let bias = bias_storage.as_deref().map(|s| match s {
                Storage::Cpu(s) => s,
                _ => crate::ops::cpu_only!(),
            });
            let (out, probs) = cpu::forward(q, k, v, bias, dims, scale);
            (Storage::Cpu(out), Storage::Cpu(probs))
        }
        _ => crate::ops::cpu_only!(),
    };
    drop(bias_storage);
    let device = q.device().clone();
    let backward = AttentionBackward {
        probs: Tensor::from_storage(probs, [b, h, n, n].into(), device.clone()),
        scale,
    };
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

struct AttentionBackward {
    /// The attention weights P = softmax(S), [B, H, N, N].
    probs: Tensor,
    scale: f64,
}

impl BackwardOp for AttentionBackward {
    fn name(&self) -> &'static str {
        "attention"
    }
    fn backward(
        &self,
        inputs: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let (q, k, v) = (&inputs[0], &inputs[1], &inputs[2]);
        let p = &self.probs;
        let dv = v
            .requires_grad()
            .then(|| p.matmul_t(g, true, false))
            .transpose()?;
        let dp = g.matmul_t(v, false, true)?;
        let ds = softmax_grad(p, &dp, 3, false)?;
        let dq = q
            .requires_grad()
            .then(|| ds.matmul(k)?.mul_scalar(self.scale))
            .transpose()?;
        let dk = k
            .requires_grad()
            .then(|| ds.matmul_t(q, true, false)?.mul_scalar(self.scale))
            .transpose()?;
        let mut grads = vec![dq, dk, dv];
        if let Some(bias) = inputs.get(3) {
            grads.push(bias.requires_grad().then(|| ds.sum(0, false)).transpose()?);
        }
        Ok(grads)
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
