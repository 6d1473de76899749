//! CPU matmul on the `gemm` crate (pure Rust, runtime-dispatched AVX2/FMA/AVX-512 kernels),
//! which reads any row/column strides, so transposes cost nothing. [`gemm`] is the one
//! matrix product every CPU op uses (matmul here, conv2d's im2col products). F16 operands
//! (saved activations under `--precision f16`) are widened to f32 a block at a time.
use std::borrow::Cow;

use gemm::Parallelism;
use rayon::prelude::*;

use super::MatmulDims;
use crate::ops::saved_input::Input;
use crate::storage::{widen, widen_into};
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
    let a_view = Strided::of(if trans_a { m } else { k }, trans_a);
    let b_view = Strided::of(if trans_b { k } else { n }, trans_b);
    gemm_strided(
        (m, k, n),
        (a, a_view),
        (b, b_view),
        (c, Strided::of(n, false)),
        accumulate,
        parallel,
    );
}

/// Where a matrix lies in a slice: element [i, j] at `offset + i·rs + j·cs`.
#[derive(Clone, Copy, Debug)]
struct Strided {
    offset: usize,
    rs: usize,
    cs: usize,
}

impl Strided {
    /// A whole matrix stored row-major as [rows, cols], read as it is or transposed.
    fn of(cols: usize, transposed: bool) -> Strided {
        let (rs, cs) = if transposed { (1, cols) } else { (cols, 1) };
        Strided { offset: 0, rs, cs }
    }
    /// The part from row `r` on.
    fn at_row(self, r: usize) -> Strided {
        Strided {
            offset: self.offset + r * self.rs,
            ..self
        }
    }
    /// The part from column `c` on.
    fn at_col(self, c: usize) -> Strided {
        Strided {
            offset: self.offset + c * self.cs,
            ..self
        }
    }
    /// Whether a rows x cols matrix read this way stays inside `len` elements.
    fn fits(self, (rows, cols): (usize, usize), len: usize) -> bool {
        self.offset + (rows - 1) * self.rs + (cols - 1) * self.cs < len
    }
}

/// C = op(A)·op(B) (or C += with `accumulate`) for m, k, n > 0, each operand and C a strided
/// matrix inside its slice.
fn gemm_strided<T: Elem>(
    (m, k, n): (usize, usize, usize),
    (a, at): (&[T], Strided),
    (b, bt): (&[T], Strided),
    (c, ct): (&mut [T], Strided),
    accumulate: bool,
    parallel: bool,
) {
    assert!(at.fits((m, k), a.len()) && bt.fits((k, n), b.len()) && ct.fits((m, n), c.len()));
    // Splitting small products costs more than it saves.
    let par = if parallel && 2 * m * k * n >= (1 << 20) {
        Parallelism::Rayon(rayon::current_num_threads())
    } else {
        Parallelism::None
    };
    // SAFETY: the assert above keeps every strided read and write inside the slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr().add(ct.offset),
            ct.cs as isize,
            ct.rs as isize,
            accumulate,
            a.as_ptr().add(at.offset),
            at.cs as isize,
            at.rs as isize,
            b.as_ptr().add(bt.offset),
            bt.cs as isize,
            bt.rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        );
    }
}

pub(crate) fn matmul(a: &CpuStorage, b: &CpuStorage, d: &MatmulDims) -> CpuStorage {
    match (a, b) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(batched(a, b, d)),
        (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(batched(a, b, d)),
        (a, b) => CpuStorage::F32(with_f16(a, b, d, F16_BLOCK)),
    }
}

/// Most f16 values [`with_f16`] widens at a time (8 MiB of f32).
const F16_BLOCK: usize = 1 << 21;

/// A product with F16 operands (under `--precision f16` the tape hands matmul's rule the
/// saved activations as their f16 copies), in f32 arithmetic. Widening a saved activation
/// whole would bring back, for the length of the product, the f32 tensor that keeping it in
/// f16 saved (620 MB for BEiT-base's widest at 256 views), so a large f16 operand is widened
/// `block` values at a time, whole stored rows, each block's product written to its part of
/// C or, where its rows lie along k, added into C. Small operands, and the smaller of two
/// f16 operands, are widened whole.
pub(super) fn with_f16(a: &CpuStorage, b: &CpuStorage, d: &MatmulDims, block: usize) -> Vec<f32> {
    let large = |s: &CpuStorage| matches!(s, CpuStorage::F16(v) if v.len() > block);
    let a_blocked = large(a) && a.len() >= b.len();
    let b_blocked = large(b) && !a_blocked;
    if !a_blocked && !b_blocked {
        return batched(&wide(a), &wide(b), d);
    }
    let (a_wide, b_wide) = ((!a_blocked).then(|| wide(a)), (!b_blocked).then(|| wide(b)));
    let (a, b) = (operand(a, &a_wide), operand(b, &b_wide));
    let tall = stacked(d);
    let d = tall.as_ref().unwrap_or(d);
    let (m, k, n) = (d.m, d.k, d.n);
    let mut out = vec![0f32; d.batch * m * n];
    if m == 0 || n == 0 {
        return out;
    }
    for (i, c) in out.chunks_mut(m * n).enumerate() {
        let (a, b) = (
            entry(a, i, d.a_batched, m * k),
            entry(b, i, d.b_batched, k * n),
        );
        blocked_product((m, k, n), (a, d.trans_a), (b, d.trans_b), c, block);
    }
    out
}

/// A's batch entries against one B, A not transposed (a Linear's weight under [N, T, in]
/// inputs): the entries stacked are one [batch·m, k] matrix, so the call is one tall
/// product, which blocks better and packs B once instead of once per entry.
fn stacked(d: &MatmulDims) -> Option<MatmulDims> {
    (d.batch > 1 && d.a_batched && !d.b_batched && !d.trans_a).then_some(MatmulDims {
        batch: 1,
        m: d.batch * d.m,
        a_batched: false,
        ..*d
    })
}

/// `s` as it is, or its widened copy where there is one.
fn operand<'s>(s: &'s CpuStorage, widened: &'s Option<Cow<'s, [f32]>>) -> Input<'s, f32> {
    match widened {
        Some(w) => Input::Full(w),
        None => Input::of(s).expect("only an F16 operand goes unwidened"),
    }
}

/// Batch entry `i` (`len` values) of an operand, or the whole matrix when it is shared.
fn entry(x: Input<'_, f32>, i: usize, batched: bool, len: usize) -> Input<'_, f32> {
    let at = if batched { i * len } else { 0 };
    x.part(at..at + len)
}

fn wide(s: &CpuStorage) -> Cow<'_, [f32]> {
    match s {
        CpuStorage::F32(v) => Cow::Borrowed(v),
        CpuStorage::F16(v) => Cow::Owned(widen(v)),
        CpuStorage::F64(_) => unreachable!("f64 meets only f64"),
    }
}

/// C = op(A)·op(B) for one matrix each, one of A and B in f16, widened by blocks of its
/// stored rows. Those rows run along m (A), k (Aᵀ or B) or n (Bᵀ) of the product: a block
/// is a band of C's rows, a slice of the sum over k, or a band of C's columns.
fn blocked_product(
    (m, k, n): (usize, usize, usize),
    (a, trans_a): (Input<'_, f32>, bool),
    (b, trans_b): (Input<'_, f32>, bool),
    c: &mut [f32],
    block: usize,
) {
    let a_view = Strided::of(if trans_a { m } else { k }, trans_a);
    let b_view = Strided::of(if trans_b { k } else { n }, trans_b);
    let c_view = Strided::of(n, false);
    if k == 0 {
        c.fill(0.0);
        return;
    }
    enum Along {
        M,
        K,
        N,
    }
    let (half, cols, transposed, along, other) = match (a, b) {
        (Input::Half(h), Input::Full(f)) => {
            let along = if trans_a { Along::K } else { Along::M };
            (h, if trans_a { m } else { k }, trans_a, along, f)
        }
        (Input::Full(f), Input::Half(h)) => {
            let along = if trans_b { Along::N } else { Along::K };
            (h, if trans_b { k } else { n }, trans_b, along, f)
        }
        _ => unreachable!("exactly one operand is blocked"),
    };
    let a_is_half = matches!(a, Input::Half(_));
    let rows = half.len() / cols;
    let step = (block / cols).max(1);
    let mut scratch = vec![0f32; step.min(rows) * cols];
    for r0 in (0..rows).step_by(step) {
        let r = step.min(rows - r0);
        let wide = &mut scratch[..r * cols];
        widen_into(&half[r0 * cols..(r0 + r) * cols], wide);
        let block_view = Strided::of(cols, transposed);
        let (dims, a_at, b_at, c_at, accumulate) = match along {
            Along::M => ((r, k, n), block_view, b_view, c_view.at_row(r0), false),
            Along::N => ((m, k, r), a_view, block_view, c_view.at_col(r0), false),
            Along::K if a_is_half => ((m, r, n), block_view, b_view.at_row(r0), c_view, r0 > 0),
            Along::K => ((m, r, n), a_view.at_col(r0), block_view, c_view, r0 > 0),
        };
        let (a_data, b_data) = if a_is_half {
            (&*wide, other)
        } else {
            (other, &*wide)
        };
        gemm_strided(
            dims,
            (a_data, a_at),
            (b_data, b_at),
            (c, c_at),
            accumulate,
            true,
        );
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
    if let Some(tall) = stacked(d) {
        gemm(
            (tall.m, k, n),
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
