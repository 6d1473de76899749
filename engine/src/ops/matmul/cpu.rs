//! CPU matmul on the `gemm` crate (pure Rust, runtime-dispatched AVX2/FMA/AVX-512 kernels),
//! which reads any row/column strides, so transposes cost nothing. [`gemm`] is the one
//! matrix product every CPU op uses (matmul here, conv2d's im2col products).
use gemm::Parallelism;
use rayon::prelude::*;

use super::MatmulDims;
use crate::{CpuStorage, Elem};

/// One row-major matrix product: C[m,n] = op(A)·op(B), or C += op(A)·op(B) when
/// `accumulate`. A is stored [m,k] ([k,m] when `trans_a`), B [k,n] ([n,k] when `trans_b`).
/// `parallel` lets the product split across the rayon pool; callers that already run one
/// product per rayon task pass false.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<T: Elem>(
    (m, k, n): (usize, usize, usize),
    a: &[T],
    trans_a: bool,
    b: &[T],
    trans_b: bool,
    c: &mut [T],
    accumulate: bool,
    parallel: bool,
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(T::zero());
        }
        return;
    }
    let (a_rs, a_cs) = strides(if trans_a { m } else { k }, trans_a);
    let (b_rs, b_cs) = strides(if trans_b { k } else { n }, trans_b);
    // Splitting small products costs more than it saves.
    let par = if parallel && 2 * m * k * n >= (1 << 20) {
        Parallelism::Rayon(rayon::current_num_threads())
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above keep every strided read and write inside the slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        );
    }
}

/// Row and column strides of an operand stored row-major as [rows, cols], read transposed or not.
fn strides(cols: usize, transposed: bool) -> (isize, isize) {
    if transposed {
        (1, cols as isize)
    } else {
        (cols as isize, 1)
    }
}

pub(crate) fn matmul(a: &CpuStorage, b: &CpuStorage, d: &MatmulDims) -> CpuStorage {
    match (a, b) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(batched(a, b, d)),
        (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(batched(a, b, d)),
        _ => unreachable!("dtypes are checked before dispatch"),
    }
}

fn batched<T: Elem>(a: &[T], b: &[T], d: &MatmulDims) -> Vec<T> {
    let (m, k, n) = (d.m, d.k, d.n);
    let mut out = vec![T::zero(); d.batch * m * n];
    if out.is_empty() {
        return out;
    }
    let one = |i: usize, c: &mut [T], parallel: bool| {
        let a = if d.a_batched {
            &a[i * m * k..(i + 1) * m * k]
        } else {
            a
        };
        let b = if d.b_batched {
            &b[i * k * n..(i + 1) * k * n]
        } else {
            b
        };
        gemm((m, k, n), a, d.trans_a, b, d.trans_b, c, false, parallel);
    };
    if d.batch > 1 && d.a_batched && !d.b_batched && !d.trans_a {
        // A's batch entries stacked are one [batch·m, k] matrix (row-major, not transposed)
        // against the one B (a Linear's weight under [N, T, in] inputs): one tall product,
        // which blocks better and packs B once instead of once per entry.
        gemm(
            (d.batch * m, k, n),
            a,
            false,
            b,
            d.trans_b,
            &mut out,
            false,
            true,
        );
        return out;
    }
    let many = d.batch >= 4 * rayon::current_num_threads() && 2 * m * k * n < (1 << 26);
    if many || (d.batch > 1 && 2 * m * k * n < (1 << 22)) {
        // Many products (attention heads), or small ones: one per rayon task. Splitting each
        // head's product across the threads instead left them idle at every join: BEiT-base's
        // 197 x 64 x 197 heads, attention forward + backward 500-580 -> 320 ms a step at 4
        // views (2 threads, 2026-12-07).
        out.par_chunks_mut(m * n)
            .enumerate()
            .for_each(|(i, c)| one(i, c, false));
    } else {
        out.chunks_mut(m * n)
            .enumerate()
            .for_each(|(i, c)| one(i, c, true));
    }
    out
}
