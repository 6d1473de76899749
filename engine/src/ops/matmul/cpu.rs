//! CPU matmul on the `gemm` crate (pure Rust, runtime-dispatched AVX2/FMA/AVX-512 kernels),
//! which reads any row/column strides, so transposes cost nothing.
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::MatmulDims;
use crate::{CpuStorage, Elem};

pub(crate) fn matmul(a: &CpuStorage, b: &CpuStorage, d: &MatmulDims) -> CpuStorage {
    match (a, b) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(batched(a, b, d)),
        (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(batched(a, b, d)),
        _ => unreachable!("dtypes are checked before dispatch"),
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

fn batched<T: Elem>(a: &[T], b: &[T], d: &MatmulDims) -> Vec<T> {
    let (m, k, n) = (d.m, d.k, d.n);
    let mut out = vec![T::zero(); d.batch * m * n];
    if out.is_empty() {
        return out;
    }
    // Row stride of A as stored: [m, k] or, transposed, [k, m].
    let (a_rs, a_cs) = strides(if d.trans_a { m } else { k }, d.trans_a);
    let (b_rs, b_cs) = strides(if d.trans_b { k } else { n }, d.trans_b);
    let one = |i: usize, c: &mut [T], par: Parallelism| {
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
        if k == 0 {
            return;
        }
        // SAFETY: the slices hold m*k, k*n and m*n elements and the strides stay inside them.
        unsafe {
            gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                a_cs,
                a_rs,
                b.as_ptr(),
                b_cs,
                b_rs,
                T::zero(),
                T::one(),
                false,
                false,
                false,
                par,
            );
        }
    };
    let flops = 2 * m * k * n;
    if d.batch > 1 && flops < (1 << 22) {
        // Many small products (attention heads): one per rayon task.
        out.par_chunks_mut(m * n)
            .enumerate()
            .for_each(|(i, c)| one(i, c, Parallelism::None));
    } else {
        let par = if flops >= (1 << 20) {
            Parallelism::Rayon(rayon::current_num_threads())
        } else {
            Parallelism::None
        };
        out.chunks_mut(m * n)
            .enumerate()
            .for_each(|(i, c)| one(i, c, par));
    }
    out
}
