//! CPU conv2d: im2col + [`gemm`] per sample, rayon over the batch.
use rayon::prelude::*;

use super::{Conv2dDims, Wanted};
use crate::ops::matmul::cpu::gemm;
use crate::ops::saved_input::Input;
use crate::{CpuStorage, Elem};

/// Below this many multiply-adds a whole conv runs on one thread.
const PAR_MIN_MACS: usize = 1 << 18;

/// One rayon task per sample when the batch can keep every thread busy (each product then
/// runs single-threaded, on its own scratch buffer); otherwise samples run one after another
/// and each product splits itself across the threads.
fn parallel_over_batch(d: &Conv2dDims) -> bool {
    let macs = d.n * d.o * d.patch_len() * d.out_pixels();
    d.n >= rayon::current_num_threads() && macs >= PAR_MIN_MACS
}

pub(crate) fn forward(
    x: &CpuStorage,
    w: &CpuStorage,
    b: Option<&CpuStorage>,
    d: &Conv2dDims,
) -> CpuStorage {
    match (x, w) {
        (CpuStorage::F32(x), CpuStorage::F32(w)) => {
            CpuStorage::F32(forward_typed(x, w, b.map(|b| b.as_slice()), d))
        }
        (CpuStorage::F64(x), CpuStorage::F64(w)) => {
            CpuStorage::F64(forward_typed(x, w, b.map(|b| b.as_slice()), d))
        }
        _ => unreachable!("dtypes are checked before dispatch"),
    }
}

fn forward_typed<T: Elem>(x: &[T], w: &[T], bias: Option<&[T]>, d: &Conv2dDims) -> Vec<T> {
    let (sample_in, pix) = (d.c * d.h * d.w, d.out_pixels());
    let cols_len = if d.is_pointwise() {
        0
    } else {
        d.patch_len() * pix
    };
    let mut y = vec![T::zero(); d.n * d.o * pix];
    // y_n = W · cols_n (+ bias, by starting from it and accumulating).
    let one = |cols: &mut Vec<T>, x_n: &[T], y_n: &mut [T], parallel: bool| {
        if let Some(bias) = bias {
            for (row, &b) in y_n.chunks_exact_mut(pix).zip(bias) {
                row.fill(b);
            }
        }
        let cols: &[T] = if d.is_pointwise() {
            x_n
        } else {
            im2col(x_n, d, cols);
            cols
        };
        let dims = (d.o, d.patch_len(), pix);
        gemm(dims, w, false, cols, false, y_n, bias.is_some(), parallel);
    };
    let samples = y.chunks_mut(d.o * pix).zip(x.chunks(sample_in));
    if parallel_over_batch(d) {
        let samples = y.par_chunks_mut(d.o * pix).zip(x.par_chunks(sample_in));
        samples.for_each_init(
            || vec![T::zero(); cols_len],
            |cols, (y_n, x_n)| one(cols, x_n, y_n, false),
        );
    } else {
        let mut cols = vec![T::zero(); cols_len];
        for (y_n, x_n) in samples {
            one(&mut cols, x_n, y_n, true);
        }
    }
    y
}

pub(crate) struct Grads {
    pub input: Option<CpuStorage>,
    pub weight: Option<CpuStorage>,
    pub bias: Option<CpuStorage>,
}

pub(crate) fn backward(
    x: &CpuStorage,
    w: &CpuStorage,
    g: &CpuStorage,
    d: &Conv2dDims,
    wanted: Wanted,
) -> Grads {
    fn wrap<T: Elem>((dx, dw, db): (Vec<T>, Vec<T>, Vec<T>), wanted: Wanted) -> Grads {
        Grads {
            input: wanted.input.then(|| T::into_storage(dx)),
            weight: wanted.weight.then(|| T::into_storage(dw)),
            bias: wanted.bias.then(|| T::into_storage(db)),
        }
    }
    match (x, w, g) {
        (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(g)) => {
            wrap(backward_typed(Input::Full(x), w, g, d, wanted), wanted)
        }
        (CpuStorage::F16(x), CpuStorage::F32(w), CpuStorage::F32(g)) => {
            wrap(backward_typed(Input::Half(x), w, g, d, wanted), wanted)
        }
        (CpuStorage::F64(x), CpuStorage::F64(w), CpuStorage::F64(g)) => {
            wrap(backward_typed(Input::Full(x), w, g, d, wanted), wanted)
        }
        _ => unreachable!("dtypes are checked before dispatch"),
    }
}

/// Per-task state of the backward pass: scratch for a sample widened from f16 (`--precision
/// f16`'s saved input, which the backward pass reads a sample at a time) and for its im2col
/// matrix, and
/// this task's share of the weight and bias gradients (summed over its samples; the shares
/// are added at the end).
struct Partial<T> {
    x: Vec<T>,
    cols: Vec<T>,
    dw: Vec<T>,
    db: Vec<T>,
}

impl<T: Elem> Partial<T> {
    fn new(d: &Conv2dDims) -> Self {
        let cols_len = if d.is_pointwise() {
            0
        } else {
            d.patch_len() * d.out_pixels()
        };
        Partial {
            x: Vec::new(),
            cols: vec![T::zero(); cols_len],
            dw: vec![T::zero(); d.o * d.patch_len()],
            db: vec![T::zero(); d.o],
        }
    }
    fn add(mut self, other: Self) -> Self {
        for (a, &b) in self.dw.iter_mut().zip(&other.dw) {
            *a += b;
        }
        for (a, &b) in self.db.iter_mut().zip(&other.db) {
            *a += b;
        }
        self
    }
}

/// (dx, dw, db); entries not `wanted` are left as zeros.
fn backward_typed<T: Elem>(
    x: Input<'_, T>,
    w: &[T],
    g: &[T],
    d: &Conv2dDims,
    wanted: Wanted,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (sample_in, pix, patch) = (d.c * d.h * d.w, d.out_pixels(), d.patch_len());
    // Untouched when not wanted; zeroed pages cost nothing until written.
    let mut dx = vec![T::zero(); x.len()];
    let one = |p: &mut Partial<T>, n: usize, g_n: &[T], dx_n: &mut [T], parallel: bool| {
        let x_n = x.get(n * sample_in..(n + 1) * sample_in, &mut p.x);
        if wanted.bias {
            for (db, row) in p.db.iter_mut().zip(g_n.chunks_exact(pix)) {
                *db += row.iter().copied().sum::<T>();
            }
        }
        if wanted.weight {
            // dW += dy_n [O, pix] · cols_nᵀ [pix, patch]
            let cols: &[T] = if d.is_pointwise() {
                x_n
            } else {
                im2col(x_n, d, &mut p.cols);
                &p.cols
            };
            gemm(
                (d.o, pix, patch),
                g_n,
                false,
                cols,
                true,
                &mut p.dw,
                true,
                parallel,
            );
        }
        if wanted.input {
            // d cols_n = Wᵀ [patch, O] · dy_n [O, pix], folded back onto the input.
            if d.is_pointwise() {
                gemm(
                    (patch, d.o, pix),
                    w,
                    true,
                    g_n,
                    false,
                    dx_n,
                    false,
                    parallel,
                );
            } else {
                gemm(
                    (patch, d.o, pix),
                    w,
                    true,
                    g_n,
                    false,
                    &mut p.cols,
                    false,
                    parallel,
                );
                col2im(&p.cols, d, dx_n);
            }
        }
    };
    let total = if parallel_over_batch(d) {
        let samples = dx
            .par_chunks_mut(sample_in)
            .zip(g.par_chunks(d.o * pix))
            .enumerate();
        samples
            .fold(
                || Partial::new(d),
                |mut p, (n, (dx_n, g_n))| {
                    one(&mut p, n, g_n, dx_n, false);
                    p
                },
            )
            .reduce_with(Partial::add)
    } else {
        let mut p = Partial::new(d);
        let samples = dx.chunks_mut(sample_in).zip(g.chunks(d.o * pix));
        for (n, (dx_n, g_n)) in samples.enumerate() {
            one(&mut p, n, g_n, dx_n, true);
        }
        Some(p)
    };
    let total = total.unwrap_or_else(|| Partial::new(d));
    (dx, total.dw, total.db)
}

/// Output positions 0..out whose tap `tap` lands inside an input of `size` (not in the
/// padding): those with 0 <= pos·stride + tap − padding < size.
fn inside(tap: usize, size: usize, out: usize, stride: usize, padding: usize) -> (usize, usize) {
    let lo = padding.saturating_sub(tap).div_ceil(stride).min(out);
    let hi = if size + padding > tap {
        ((size + padding - tap - 1) / stride + 1).min(out)
    } else {
        0
    };
    (lo, hi.max(lo))
}

/// Unfolds one sample x [C,H,W] into cols [C·kh·kw, Ho·Wo]: row (c,i,j) holds, for every
/// output pixel, the input value under kernel tap (i,j) there, 0 where that is padding.
fn im2col<T: Elem>(x: &[T], d: &Conv2dDims, cols: &mut [T]) {
    let (s, p) = (d.stride, d.padding);
    for (r, row) in cols.chunks_exact_mut(d.out_pixels()).enumerate() {
        let (c, i, j) = (r / (d.kh * d.kw), r / d.kw % d.kh, r % d.kw);
        let plane = &x[c * d.h * d.w..(c + 1) * d.h * d.w];
        let (y_lo, y_hi) = inside(i, d.h, d.ho, s, p);
        let (x_lo, x_hi) = inside(j, d.w, d.wo, s, p);
        for (oy, dst) in row.chunks_exact_mut(d.wo).enumerate() {
            if oy < y_lo || oy >= y_hi {
                dst.fill(T::zero());
                continue;
            }
            let src = &plane[(oy * s + i - p) * d.w..][..d.w];
            dst[..x_lo].fill(T::zero());
            dst[x_hi..].fill(T::zero());
            if x_lo == x_hi {
                continue;
            }
            let first = x_lo * s + j - p;
            let dst = &mut dst[x_lo..x_hi];
            if s == 1 {
                dst.copy_from_slice(&src[first..first + dst.len()]);
            } else {
                // Stepping an iterator, not indexing: no bounds check per element.
                for (v, &x) in dst.iter_mut().zip(src[first..].iter().step_by(s)) {
                    *v = x;
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds every entry of cols [C·kh·kw, Ho·Wo] onto the input
/// position it was read from (positions read by several windows sum their gradients).
fn col2im<T: Elem>(cols: &[T], d: &Conv2dDims, dx: &mut [T]) {
    let (s, p) = (d.stride, d.padding);
    for (r, row) in cols.chunks_exact(d.out_pixels()).enumerate() {
        let (c, i, j) = (r / (d.kh * d.kw), r / d.kw % d.kh, r % d.kw);
        let plane = &mut dx[c * d.h * d.w..(c + 1) * d.h * d.w];
        let (y_lo, y_hi) = inside(i, d.h, d.ho, s, p);
        let (x_lo, x_hi) = inside(j, d.w, d.wo, s, p);
        if x_lo == x_hi {
            continue;
        }
        for oy in y_lo..y_hi {
            let dst = &mut plane[(oy * s + i - p) * d.w..][..d.w];
            let src = &row[oy * d.wo + x_lo..oy * d.wo + x_hi];
            let first = x_lo * s + j - p;
            for (k, &v) in src.iter().enumerate() {
                dst[first + k * s] += v;
            }
        }
    }
}
