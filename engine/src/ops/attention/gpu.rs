//! Attention forward on the GPU: the two products on the tiled matmul, scaling + bias +
//! softmax fused in one pass over the score rows (softmax.wgsl's `scores`).
use super::cpu::Dims;
use crate::gpu::GpuStorage;
use crate::ops::matmul::{gpu::matmul, MatmulDims};
use crate::ops::softmax::gpu::attention_scores;
use crate::Result;

/// (O [b, h, n, d], P [b, h, n, n]).
pub(crate) fn forward(
    q: &GpuStorage,
    k: &GpuStorage,
    v: &GpuStorage,
    bias: Option<&GpuStorage>,
    dims: Dims,
    scale: f64,
) -> Result<(GpuStorage, GpuStorage)> {
    let Dims { b, h, n, d } = dims;
    let batched = |m, k, n, trans_b| MatmulDims {
        batch: b * h,
        m,
        k,
        n,
        trans_a: false,
        trans_b,
        a_batched: true,
        b_batched: true,
    };
    let scores = matmul(q, k, &batched(n, d, n, true))?;
    let probs = attention_scores(&scores, bias, h, n, scale)?;
    let out = matmul(&probs, v, &batched(n, n, d, false))?;
    Ok((out, probs))
}
