//! Attention forward on the CPU: the two products run on the matmul kernel (one gemm per
//! (batch, head)); scaling, the bias and the softmax are one pass over the score rows.
use rayon::prelude::*;

use crate::ops::matmul::{cpu::matmul, MatmulDims};
use crate::ops::softmax::cpu::softmax_row;
use crate::ops::CPU_PAR_MIN;
use crate::{CpuStorage, Elem};

/// q, k, v are [b, h, n, d].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub b: usize,
    pub h: usize,
    pub n: usize,
    pub d: usize,
}

/// (O [b, h, n, d], P [b, h, n, n]).
pub(crate) fn forward(
    q: &CpuStorage,
    k: &CpuStorage,
    v: &CpuStorage,
    bias: Option<&CpuStorage>,
    dims: Dims,
    scale: f64,
) -> (CpuStorage, CpuStorage) {
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
    let mut probs = matmul(q, k, &batched(n, d, n, true));
    match &mut probs {
        CpuStorage::F32(s) => scores_to_probs(s, bias.map(|b| b.as_slice()), dims, scale),
        CpuStorage::F64(s) => scores_to_probs(s, bias.map(|b| b.as_slice()), dims, scale),
        CpuStorage::F16(_) => unreachable!("F16 reaches only matmul and to_dtype"),
    }
    let out = matmul(&probs, v, &batched(n, n, d, false));
    (out, probs)
}

/// Q Kᵀ → softmax(scale · Q Kᵀ + bias[head]) in place, one (batch, head) matrix per task.
fn scores_to_probs<T: Elem>(s: &mut [T], bias: Option<&[T]>, dims: Dims, scale: f64) {
    let nn = dims.n * dims.n;
    if nn == 0 {
        return;
    }
    let scale = T::c(scale);
    s.par_chunks_mut(nn)
        .enumerate()
        .with_min_len((CPU_PAR_MIN / nn).max(1))
        .for_each(|(bh, scores)| {
            let head = bh % dims.h;
            let bias = bias.map(|b| &b[head * nn..(head + 1) * nn]);
            for (i, row) in scores.chunks_mut(dims.n).enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = *v * scale + bias.map_or(T::zero(), |b| b[i * dims.n + j]);
                }
                softmax_row(row);
            }
        });
}
