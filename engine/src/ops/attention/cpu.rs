//! Attention on the CPU, one (batch, head) matrix at a time in one rayon task: its products,
//! softmax and softmax gradient run while its N × N scores are still in cache, and only P,
//! which the backward needs, is stored at full size. Separate batched products and a pass
//! over all the scores in between read every score matrix back from memory several times,
//! and kept the threads waiting at each op's join (BEiT-base: 197 × 197 scores a head).
use rayon::prelude::*;

use crate::ops::matmul::cpu::gemm;
use crate::ops::saved_input::Input;
use crate::ops::softmax::cpu::{softmax_row, softmax_row_backward_in_place};
use crate::{CpuStorage, Elem};

/// Calls `$f` (an `#[inline(always)]` row pass; the arguments are variables of the listed
/// types) compiled for AVX-512 where the CPU has it: the crate is built for baseline x86-64,
/// and on its 4-lane vectors the softmax's exponentials took a third of the forward's time
/// (BEiT-base).
macro_rules! on_widest_vectors {
    ($f:ident($($arg:ident: $ty:ty),*)) => {{
        #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
        unsafe fn wide<T: Elem>($($arg: $ty),*) {
            $f($($arg),*)
        }
        if has_avx512() {
            // SAFETY: the CPU has AVX-512F.
            unsafe { wide($($arg),*) }
        } else {
            $f($($arg),*)
        }
    }};
}

fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// q, k, v are [b, h, n, d].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub b: usize,
    pub h: usize,
    pub n: usize,
    pub d: usize,
}

/// q, k and v: three [b, h, n, d] tensors, or one [3, b, h, n, d] holding them in turn.
#[derive(Clone, Copy)]
pub(crate) enum Qkv<'a> {
    Separate([&'a CpuStorage; 3]),
    Packed(&'a CpuStorage),
}

impl<'a> Qkv<'a> {
    /// q, k and v as the forward reads them: never in f16 (the tape makes f16 copies only of
    /// what a node saves).
    fn slices<T: Elem>(self) -> [&'a [T]; 3] {
        self.inputs().map(|x| match x {
            Input::Full(x) => x,
            Input::Half(_) => unreachable!("the forward reads f32 or f64"),
        })
    }

    /// q, k and v as the backward reads them: as they are, or the f16 copies that
    /// `--precision f16` saved, which each task widens one (batch, head) matrix at a time.
    fn inputs<T: Elem>(self) -> [Input<'a, T>; 3] {
        let input = |s| Input::of(s).expect("dtypes are checked before dispatch");
        match self {
            Qkv::Separate(s) => s.map(input),
            Qkv::Packed(s) => {
                let s = input(s);
                let third = s.len() / 3;
                [0, 1, 2].map(|i| s.part(i * third..(i + 1) * third))
            }
        }
    }

    fn is_f64(self) -> bool {
        matches!(
            self,
            Qkv::Separate([CpuStorage::F64(_), ..]) | Qkv::Packed(CpuStorage::F64(_))
        )
    }
}

fn slice<T: Elem>(s: &CpuStorage) -> &[T] {
    T::slice(s).expect("dtypes are checked before dispatch")
}

/// (O [b, h, n, d], P [b, h, n, n]).
pub(crate) fn forward(
    qkv: Qkv,
    bias: Option<&CpuStorage>,
    dims: Dims,
    scale: f64,
) -> (CpuStorage, CpuStorage) {
    fn typed<T: Elem>(
        qkv: Qkv,
        bias: Option<&CpuStorage>,
        dims: Dims,
        scale: f64,
    ) -> (CpuStorage, CpuStorage) {
        let (o, p) = forward_typed(qkv.slices(), bias.map(slice), dims, scale);
        (T::into_storage(o), T::into_storage(p))
    }
    if qkv.is_f64() {
        typed::<f64>(qkv, bias, dims, scale)
    } else {
        typed::<f32>(qkv, bias, dims, scale)
    }
}

fn forward_typed<T: Elem>(
    [q, k, v]: [&[T]; 3],
    bias: Option<&[T]>,
    dims: Dims,
    scale: f64,
) -> (Vec<T>, Vec<T>) {
    let Dims { b, h, n, d } = dims;
    let (nd, nn) = (n * d, n * n);
    let mut out = vec![T::zero(); b * h * nd];
    let mut probs = vec![T::zero(); b * h * nn];
    if out.is_empty() {
        // No keys, no queries or no head dimension: nothing reads the weights.
        return (out, probs);
    }
    let scale = T::c(scale);
    probs
        .par_chunks_mut(nn)
        .zip(out.par_chunks_mut(nd))
        .enumerate()
        .for_each(|(bh, (p, o))| {
            let [q, k, v] = [q, k, v].map(|x| &x[bh * nd..(bh + 1) * nd]);
            gemm((n, d, n), q, false, k, true, p, false, false);
            let bias = bias.map(|b| &b[(bh % h) * nn..][..nn]);
            on_widest_vectors!(scores_to_probs(p: &mut [T], bias: Option<&[T]>, n: usize, scale: T));
            gemm((n, n, d), p, false, v, false, o, false, false);
        });
    (out, probs)
}

/// One matrix's scores Q Kᵀ → softmax(scale · Q Kᵀ + bias), row by row.
#[inline(always)]
fn scores_to_probs<T: Elem>(p: &mut [T], bias: Option<&[T]>, n: usize, scale: T) {
    for (i, row) in p.chunks_exact_mut(n).enumerate() {
        match bias {
            Some(b) => {
                for (s, &b) in row.iter_mut().zip(&b[i * n..(i + 1) * n]) {
                    *s = *s * scale + b;
                }
            }
            None => row.iter_mut().for_each(|s| *s *= scale),
        }
        softmax_row(row);
    }
}

/// One matrix's dP → dS = P ⊙ (dP − rowsum(dP ⊙ P)) in place, row by row.
#[inline(always)]
fn dp_to_ds<T: Elem>(ds: &mut [T], p: &[T], n: usize) {
    for (ds, p) in ds.chunks_exact_mut(n).zip(p.chunks_exact(n)) {
        softmax_row_backward_in_place(p, ds);
    }
}

/// The gradients of q, k and v (laid out as they came: three tensors or one packed) and,
/// when `bias_grad`, of the bias, from the weights P and the output gradient g.
pub(crate) fn backward(
    qkv: Qkv,
    probs: &CpuStorage,
    g: &CpuStorage,
    dims: Dims,
    scale: f64,
    bias_grad: bool,
) -> (Vec<CpuStorage>, Option<CpuStorage>) {
    fn typed<T: Elem>(
        qkv: Qkv,
        [p, g]: [&CpuStorage; 2],
        dims: Dims,
        scale: f64,
        bias_grad: bool,
    ) -> (Vec<CpuStorage>, Option<CpuStorage>) {
        let Dims { b, h, n, d } = dims;
        let len = b * h * n * d;
        let (p, g) = (slice(p), slice(g));
        let (grads, dbias) = match qkv {
            Qkv::Separate(_) => {
                let mut grads = [(); 3].map(|_| vec![T::zero(); len]);
                let [dq, dk, dv] = &mut grads;
                let dbias =
                    backward_typed(qkv.inputs(), p, g, [dq, dk, dv], dims, scale, bias_grad);
                (grads.into_iter().map(T::into_storage).collect(), dbias)
            }
            Qkv::Packed(_) => {
                let mut packed = vec![T::zero(); 3 * len];
                let (dq, rest) = packed.split_at_mut(len);
                let (dk, dv) = rest.split_at_mut(len);
                let dbias =
                    backward_typed(qkv.inputs(), p, g, [dq, dk, dv], dims, scale, bias_grad);
                (vec![T::into_storage(packed)], dbias)
            }
        };
        (grads, bias_grad.then(|| T::into_storage(dbias)))
    }
    if qkv.is_f64() {
        typed::<f64>(qkv, [probs, g], dims, scale, bias_grad)
    } else {
        typed::<f32>(qkv, [probs, g], dims, scale, bias_grad)
    }
}

/// One backward task's share: the (batch, head) matrices of one head over a group of batch
/// entries, and that group's partial sum of the bias gradient for the head.
struct Task<'a, T> {
    matrices: Vec<(usize, [&'a mut [T]; 3])>,
    dbias: Option<&'a mut [T]>,
}

/// Writes dq, dk and dv (zeroed, [b, h, n, d] each) and returns dbias, empty unless
/// `bias_grad`.
#[allow(clippy::too_many_arguments)]
fn backward_typed<T: Elem>(
    [q, k, v]: [Input<'_, T>; 3],
    p: &[T],
    g: &[T],
    [dq, dk, dv]: [&mut [T]; 3],
    dims: Dims,
    scale: f64,
    bias_grad: bool,
) -> Vec<T> {
    let Dims { b, h, n, d } = dims;
    let (nd, nn) = (n * d, n * n);
    // The bias gradient sums dS over the batch. A task owns one head for a group of batch
    // entries, so it adds into its own partial sum without locks; there are as few groups as
    // give every thread a few tasks, and their partial sums are added up at the end.
    let groups = b
        .min((4 * rayon::current_num_threads()).div_ceil(h.max(1)))
        .max(1);
    let mut dbias = vec![T::zero(); if bias_grad { groups * h * nn } else { 0 }];
    if dq.is_empty() {
        // Without a head dimension (or queries) every product, and so dS, is zero.
        dbias.truncate(h * nn);
        return dbias;
    }

    let mut tasks: Vec<Task<T>> = (0..groups * h)
        .map(|_| Task {
            matrices: Vec::new(),
            dbias: None,
        })
        .collect();
    let per_matrix = dq
        .chunks_mut(nd)
        .zip(dk.chunks_mut(nd))
        .zip(dv.chunks_mut(nd));
    for (bh, ((dq, dk), dv)) in per_matrix.enumerate() {
        let (batch, head) = (bh / h, bh % h);
        let group = batch * groups / b;
        tasks[group * h + head].matrices.push((bh, [dq, dk, dv]));
    }
    for (task, partial) in tasks.iter_mut().zip(dbias.chunks_mut(nn)) {
        task.dbias = Some(partial);
    }

    let scale = T::c(scale);
    tasks.into_par_iter().for_each(|mut task| {
        let mut scratch = vec![T::zero(); nn];
        let ds = &mut scratch[..];
        let [mut q_wide, mut k_wide, mut v_wide] = [(); 3].map(|_| Vec::new());
        for (bh, [dq, dk, dv]) in task.matrices {
            let matrix = bh * nd..(bh + 1) * nd;
            let (q, k, v) = (
                q.get(matrix.clone(), &mut q_wide),
                k.get(matrix.clone(), &mut k_wide),
                v.get(matrix.clone(), &mut v_wide),
            );
            let g = &g[matrix];
            let p = &p[bh * nn..(bh + 1) * nn];
            gemm((n, n, d), p, true, g, false, dv, false, false); // dV = Pᵀ dO
            gemm((n, d, n), g, false, v, true, ds, false, false); // dP = dO Vᵀ
            on_widest_vectors!(dp_to_ds(ds: &mut [T], p: &[T], n: usize));
            if let Some(acc) = task.dbias.as_deref_mut() {
                acc.iter_mut().zip(ds.iter()).for_each(|(a, &s)| *a += s);
            }
            gemm((n, n, d), ds, false, k, false, dq, false, false); // dS K
            gemm((n, n, d), ds, true, q, false, dk, false, false); // dSᵀ Q
            for x in dq.iter_mut().chain(dk.iter_mut()) {
                *x *= scale;
            }
        }
    });

    if bias_grad && groups > 1 {
        let (total, rest) = dbias.split_at_mut(h * nn);
        total
            .par_chunks_mut(nn)
            .enumerate()
            .for_each(|(head, total)| {
                for partial in rest.chunks(h * nn) {
                    let partial = &partial[head * nn..(head + 1) * nn];
                    total.iter_mut().zip(partial).for_each(|(t, &x)| *t += x);
                }
            });
        dbias.truncate(h * nn);
    }
    dbias
}
