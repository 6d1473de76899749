//! Scaled dot-product attention with an additive bias on the scores, as one op:
//! S = scale · Q Kᵀ + bias, P = softmax(S) over each row, O = P V, for q, k, v of shape
//! [B, H, N, D] and a bias [H, N, N] shared by the batch (BEiT's relative position bias).
//! The backward is
//!   dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),
//!   dQ = scale · dS K,  dK = scale · dSᵀ Q,  dbias = Σ_B dS.
//! The CPU forward keeps P and the backward applies these formulas, both one (batch, head)
//! matrix per task (see cpu.rs). The GPU runs fused kernels that never store P: the forward
//! keeps each score row's logsumexp, and the backward recomputes P from it (see gpu.rs).
//! [`attention_packed`] takes q, k and v as one tensor, as BEiT's fused qkv projection gives
//! them.
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
    let dims = checked_dims(q, q.dims(), bias)?;
    let device = q.device().clone();
    let tensor = |s, shape: &[usize]| Tensor::from_storage(s, shape.into(), device.clone());
    let cpu::Dims { b, h, n, .. } = dims;
    let bias_storage = bias.map(|t| t.storage());
    let (out, saved) = match (&*q.storage(), &*k.storage(), &*v.storage()) {
        (Storage::Cpu(q), Storage::Cpu(k), Storage::Cpu(v)) => {
            let qkv = cpu::Qkv::Separate([q, k, v]);
            let (out, probs) = cpu::forward(qkv, cpu_bias(bias_storage.as_deref())?, dims, scale);
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
    let backward = AttentionBackward {
        saved,
        dims,
        scale,
        packed: false,
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

/// [`attention`] of q, k and v packed in one tensor [3, B, H, N, D] (q, then k, then v), as a
/// fused qkv projection gives them after one permute. The CPU reads the three parts in place
/// and writes their gradients as one tensor; three narrows instead cost a copy each, and in
/// the backward a zero-padded full-size gradient each and two additions of those. The GPU
/// kernels take separate tensors, so there (and when planning for a GPU) it narrows.
pub fn attention_packed(qkv: &Tensor, bias: Option<&Tensor>, scale: f64) -> Result<Tensor> {
    ensure_shape!(
        qkv.rank() == 5 && qkv.dims()[0] == 3,
        "attention",
        "packed q, k and v must be [3, B, H, N, D], got {:?}",
        qkv.shape()
    );
    let on_cpu = match &*qkv.storage() {
        Storage::Cpu(_) => true,
        Storage::Meta(s) => matches!(s.device().model(), AllocatorModel::Cpu),
        Storage::Gpu(_) => false,
    };
    if !on_cpu {
        let part = |i| qkv.narrow(0, i, 1)?.reshape(&qkv.dims()[1..]);
        return attention(&part(0)?, &part(1)?, &part(2)?, bias, scale);
    }
    let shape = &qkv.dims()[1..];
    let dims = checked_dims(qkv, shape, bias)?;
    let device = qkv.device().clone();
    let tensor = |s, shape: &[usize]| Tensor::from_storage(s, shape.into(), device.clone());
    let cpu::Dims { b, h, n, d } = dims;
    let bias_storage = bias.map(|t| t.storage());
    let (out, probs) = match &*qkv.storage() {
        Storage::Cpu(s) => {
            let qkv = cpu::Qkv::Packed(s);
            let (out, probs) = cpu::forward(qkv, cpu_bias(bias_storage.as_deref())?, dims, scale);
            (Storage::Cpu(out), Storage::Cpu(probs))
        }
        Storage::Meta(s) => (
            Storage::Meta(s.output(b * h * n * d, "attention")),
            Storage::Meta(s.output(b * h * n * n, "attention")),
        ),
        Storage::Gpu(_) => unreachable!("the GPU narrows above"),
    };
    drop(bias_storage);
    let backward = AttentionBackward {
        saved: Saved::Probs(tensor(probs, &[b, h, n, n])),
        dims,
        scale,
        packed: true,
    };
    let mut inputs = vec![qkv.clone()];
    inputs.extend(bias.cloned());
    Ok(Tensor::from_op(out, shape.into(), device, backward, inputs))
}

/// The dimensions of q, k and v shaped `shape` ([B, H, N, D]), once the bias (if any) is
/// checked against them: [H, N, N] on `like`'s device.
fn checked_dims(like: &Tensor, shape: &[usize], bias: Option<&Tensor>) -> Result<cpu::Dims> {
    let [b, h, n, d] = [0, 1, 2, 3].map(|i| shape[i]);
    if let Some(bias) = bias {
        like.check_same("attention", bias)?;
        ensure_shape!(
            bias.dims() == [h, n, n],
            "attention",
            "bias must be [H, N, N] = [{h}, {n}, {n}] for q {:?}, got {:?}",
            shape,
            bias.shape()
        );
    }
    Ok(cpu::Dims { b, h, n, d })
}

fn cpu_bias(bias: Option<&Storage>) -> Result<Option<&CpuStorage>> {
    match bias {
        None => Ok(None),
        Some(Storage::Cpu(s)) => Ok(Some(s)),
        Some(_) => Err(crate::storage::mixed_devices("attention")),
    }
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
    /// Inputs [qkv, bias?] (from [`attention_packed`]) rather than [q, k, v, bias?].
    packed: bool,
}

impl BackwardOp for AttentionBackward {
    fn name(&self) -> &'static str {
        "attention"
    }
    /// q, k and v; the GPU kernels also recompute the scores from the bias and read the
    /// output, where the CPU saved the weights instead.
    fn saves_input(&self, index: usize) -> bool {
        index < self.bias_index() || self.fused()
    }
    fn saves_output(&self) -> bool {
        self.fused()
    }
    /// q, k and v (or the packed qkv): the CPU widens one (batch, head) matrix at a time,
    /// the GPU kernels read f16.
    fn reads_f16(&self, index: usize) -> bool {
        index < self.bias_index()
    }
    fn backward(&self, inputs: &[Tensor], out: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        match &self.saved {
            Saved::Probs(p) => self.backward_from_probs(inputs, p, g),
            Saved::LogSumExp(lse) => self.backward_fused(inputs, out, lse, g),
        }
    }
}

impl AttentionBackward {
    fn fused(&self) -> bool {
        matches!(self.saved, Saved::LogSumExp(_))
    }

    /// Where the bias is among the inputs, after q, k and v or after the packed qkv.
    fn bias_index(&self) -> usize {
        if self.packed {
            1
        } else {
            3
        }
    }

    /// The gradients as the planner's allocations (each like its input), for a backward on
    /// the meta device.
    fn meta_grads(
        like: &crate::memory::meta::MetaStorage,
        inputs: &[Tensor],
    ) -> Vec<Option<Tensor>> {
        inputs
            .iter()
            .map(|t| {
                t.requires_grad().then(|| {
                    let s = like.output(t.numel(), "attention backward");
                    Tensor::from_storage(Storage::Meta(s), t.shape().clone(), t.device().clone())
                })
            })
            .collect()
    }

    /// The formulas of the module doc, one (batch, head) matrix per task (see cpu.rs).
    fn backward_from_probs(
        &self,
        inputs: &[Tensor],
        p: &Tensor,
        g: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let wanted: Vec<bool> = inputs.iter().map(|t| t.requires_grad()).collect();
        let qkv_inputs = &inputs[..self.bias_index()];
        let qkv_storages: Vec<_> = qkv_inputs.iter().map(|t| t.storage()).collect();
        let (p_storage, g_storage) = (p.storage(), g.storage());
        let (Storage::Cpu(p_cpu), Storage::Cpu(g_cpu)) = (&*p_storage, &*g_storage) else {
            if let Storage::Meta(like) = &*g_storage {
                return Ok(Self::meta_grads(like, inputs));
            }
            return Err(crate::storage::mixed_devices("attention backward"));
        };
        let cpu_storages: Vec<&CpuStorage> = qkv_storages
            .iter()
            .map(|s| match &**s {
                Storage::Cpu(s) => Ok(s),
                _ => Err(crate::storage::mixed_devices("attention backward")),
            })
            .collect::<Result<_>>()?;
        let qkv = match cpu_storages[..] {
            [packed] => cpu::Qkv::Packed(packed),
            [q, k, v] => cpu::Qkv::Separate([q, k, v]),
            _ => unreachable!("one packed input or three"),
        };
        let bias_grad = wanted.get(self.bias_index()).copied().unwrap_or(false);
        let (grads, dbias) = cpu::backward(qkv, p_cpu, g_cpu, self.dims, self.scale, bias_grad);
        let mut result: Vec<Option<Tensor>> = grads
            .into_iter()
            .zip(qkv_inputs)
            .zip(&wanted)
            .map(|((s, t), &wanted)| {
                wanted.then(|| {
                    Tensor::from_storage(Storage::Cpu(s), t.shape().clone(), t.device().clone())
                })
            })
            .collect();
        if let Some(bias) = inputs.get(self.bias_index()) {
            result.push(dbias.map(|s| {
                Tensor::from_storage(Storage::Cpu(s), bias.shape().clone(), bias.device().clone())
            }));
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
        // The f16 kernels read q, k and v all in f16; where only some were kept in f16 (a
        // small one stays f32), those are widened.
        let widened;
        let inputs = if inputs[..3].iter().all(|t| t.dtype() == inputs[0].dtype()) {
            inputs
        } else {
            widened = inputs
                .iter()
                .map(|t| match t.dtype() {
                    crate::DType::F16 => t.to_dtype(crate::DType::F32),
                    _ => Ok(t.clone()),
                })
                .collect::<Result<Vec<_>>>()?;
            &widened
        };
        // δ_i = rowsum(dO ⊙ O) = Σ_j P_ij dP_ij, the softmax gradient's subtracted term,
        // packed after L so that the kernels read both from one buffer.
        let delta = g.mul(out)?.sum(-1, false)?;
        let stats = Tensor::concat(&[lse.reshape([b * h * n])?, delta.reshape([b * h * n])?], 0)?;
        let wanted = [0, 1, 2, 3].map(|i| inputs.get(i).is_some_and(|t| t.requires_grad()));
        if let Storage::Meta(q) = &*stats.storage() {
            return Ok(Self::meta_grads(q, inputs));
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
        Case::new("attention_packed", &[&[3, 2, 3, 4, 5], &[3, 4, 4]], |x| {
            attention_packed(&x[0], Some(&x[1]), 0.4)
        }),
        Case::new("attention_packed_no_bias", &[&[3, 1, 2, 3, 2]], |x| {
            attention_packed(&x[0], None, 1.0)
        }),
    ]
}
