//! CPU conv2d: im2col + [`gemm`], rayon over groups of samples. A group is one sample where
//! the output maps are large; where they are small (ResNet's last stages, small images) a
//! group is enough samples side by side for one product of about [`GROUP_COLUMNS`] output
//! pixels, instead of one thin product per sample.
use rayon::prelude::*;

use super::{Conv2dDims, Wanted};
use crate::ops::matmul::cpu::gemm;
use crate::{CpuStorage, Elem};

/// Below this many multiply-adds a whole conv runs on one thread.
const PAR_MIN_MACS: usize = 1 << 18;

/// Output pixels (product columns) a group of samples aims at.
const GROUP_COLUMNS: usize = 256;

/// Samples per group: one where a sample's output has GROUP_COLUMNS pixels or more.
fn group_size(d: &Conv2dDims) -> usize {
    GROUP_COLUMNS
        .div_ceil(d.out_pixels().max(1))
        .clamp(1, d.n.max(1))
}

/// One rayon task per group when the groups can keep every thread busy (each product then
/// runs single-threaded, on its own scratch buffers); otherwise groups run one after another
/// and each product splits itself across the threads.
fn parallel_over_groups(d: &Conv2dDims) -> bool {
    let macs = d.n * d.o * d.patch_len() * d.out_pixels();
    d.n.div_ceil(group_size(d)) >= rayon::current_num_threads() && macs >= PAR_MIN_MACS
}

/// Per-task scratch of the forward and backward passes: the group's im2col matrix
/// [patch, g·pix], the group's output (or output gradient) as one [O, g·pix] matrix, and
/// this task's share of the weight and bias gradients (summed over its groups; the shares
/// are added at the end).
struct Scratch<T> {
    cols: Vec<T>,
    wide: Vec<T>,
    dw: Vec<T>,
    db: Vec<T>,
}

impl<T: Elem> Scratch<T> {
    fn new(d: &Conv2dDims, gradients: bool) -> Self {
        let g = group_size(d);
        let columns = g * d.out_pixels();
        // A lone 1x1 sample reads its input as cols and writes its output in place.
        let direct = g == 1 && d.is_pointwise();
        let grads = if gradients { d.o * d.patch_len() } else { 0 };
        Scratch {
            cols: vec![T::zero(); if direct { 0 } else { d.patch_len() * columns }],
            wide: vec![T::zero(); if g == 1 { 0 } else { d.o * columns }],
            dw: vec![T::zero(); grads],
            db: vec![T::zero(); if gradients { d.o } else { 0 }],
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

/// The im2col matrix [patch, g·pix] of the group's samples `x_g` in `buf`, sample s in
/// columns s·pix..(s+1)·pix (a lone 1x1 sample: the sample itself).
fn unfold<'a, T: Elem>(buf: &'a mut [T], x_g: &'a [T], d: &Conv2dDims) -> &'a [T] {
    let sample_in = d.c * d.h * d.w;
    let g = x_g.len() / sample_in;
    if g == 1 && d.is_pointwise() {
        return x_g;
    }
    let columns = g * d.out_pixels();
    for (s, x_s) in x_g.chunks_exact(sample_in).enumerate() {
        im2col(x_s, d, buf, columns, s * d.out_pixels());
    }
    &buf[..d.patch_len() * columns]
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

/// A group's outputs [g, O, pix] (sample-major, as the tensor lies) from one [O, g·pix]
/// matrix (as the product writes it), or the other way round.
fn regroup<T: Elem>(wide: &[T], per_sample: &mut [T], d: &Conv2dDims) {
    let pix = d.out_pixels();
    let columns = per_sample.len() / d.o;
    for (i, run) in per_sample.chunks_exact_mut(pix).enumerate() {
        let (s, o) = (i / d.o, i % d.o);
        run.copy_from_slice(&wide[o * columns + s * pix..][..pix]);
    }
}

fn widen<T: Elem>(per_sample: &[T], wide: &mut [T], d: &Conv2dDims) {
    let pix = d.out_pixels();
    let columns = per_sample.len() / d.o;
    for (i, run) in per_sample.chunks_exact(pix).enumerate() {
        let (s, o) = (i / d.o, i % d.o);
        wide[o * columns + s * pix..][..pix].copy_from_slice(run);
    }
}

fn forward_typed<T: Elem>(x: &[T], w: &[T], bias: Option<&[T]>, d: &Conv2dDims) -> Vec<T> {
    let (sample_in, pix, g) = (d.c * d.h * d.w, d.out_pixels(), group_size(d));
    let mut y = vec![T::zero(); d.n * d.o * pix];
    // Y_g = W · cols_g (+ bias, by starting from it and accumulating).
    let one = |sc: &mut Scratch<T>, x_g: &[T], y_g: &mut [T], parallel: bool| {
        let columns = y_g.len() / d.o;
        let cols = unfold(&mut sc.cols, x_g, d);
        let grouped = columns != pix;
        let wide: &mut [T] = if grouped {
            &mut sc.wide[..d.o * columns]
        } else {
            &mut *y_g
        };
        if let Some(bias) = bias {
            for (row, &b) in wide.chunks_exact_mut(columns).zip(bias) {
                row.fill(b);
            }
        }
        let dims = (d.o, d.patch_len(), columns);
        gemm(dims, w, false, cols, false, wide, bias.is_some(), parallel);
        if grouped {
            regroup(&sc.wide, y_g, d);
        }
    };
    if parallel_over_groups(d) {
        let groups = y
            .par_chunks_mut(g * d.o * pix)
            .zip(x.par_chunks(g * sample_in));
        groups.for_each_init(
            || Scratch::new(d, false),
            |sc, (y_g, x_g)| one(sc, x_g, y_g, false),
        );
    } else if !y.is_empty() {
        let mut sc = Scratch::new(d, false);
        for (y_g, x_g) in y.chunks_mut(g * d.o * pix).zip(x.chunks(g * sample_in)) {
            one(&mut sc, x_g, y_g, true);
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
            wrap(backward_typed(x, w, g, d, wanted), wanted)
        }
        (CpuStorage::F64(x), CpuStorage::F64(w), CpuStorage::F64(g)) => {
            wrap(backward_typed(x, w, g, d, wanted), wanted)
        }
        _ => unreachable!("dtypes are checked before dispatch"),
    }
}

/// (dx, dw, db); entries not `wanted` are left as zeros.
fn backward_typed<T: Elem>(
    x: &[T],
    w: &[T],
    g: &[T],
    d: &Conv2dDims,
    wanted: Wanted,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (sample_in, pix, patch, group) = (
        d.c * d.h * d.w,
        d.out_pixels(),
        d.patch_len(),
        group_size(d),
    );
    // Untouched when not wanted; zeroed pages cost nothing until written.
    let mut dx = vec![T::zero(); x.len()];
    let one = |sc: &mut Scratch<T>, x_g: &[T], g_g: &[T], dx_g: &mut [T], parallel: bool| {
        let columns = g_g.len() / d.o;
        // dY_g as one [O, g·pix] matrix.
        let dy: &[T] = if columns == pix {
            g_g
        } else {
            widen(g_g, &mut sc.wide, d);
            &sc.wide[..d.o * columns]
        };
        if wanted.bias {
            for (db, row) in sc.db.iter_mut().zip(dy.chunks_exact(columns)) {
                *db += row.iter().copied().sum::<T>();
            }
        }
        if wanted.weight {
            // dW += dY_g [O, g·pix] · cols_gᵀ [g·pix, patch]: the sum over the group's
            // samples is the product's inner dimension.
            let cols = unfold(&mut sc.cols, x_g, d);
            gemm(
                (d.o, columns, patch),
                dy,
                false,
                cols,
                true,
                &mut sc.dw,
                true,
                parallel,
            );
        }
        if wanted.input {
            // d cols_g = Wᵀ [patch, O] · dY_g [O, g·pix], folded back onto each input.
            if columns == pix && d.is_pointwise() {
                gemm((patch, d.o, pix), w, true, dy, false, dx_g, false, parallel);
            } else {
                let dcols = &mut sc.cols[..patch * columns];
                gemm(
                    (patch, d.o, columns),
                    w,
                    true,
                    dy,
                    false,
                    dcols,
                    false,
                    parallel,
                );
                for (s, dx_s) in dx_g.chunks_exact_mut(sample_in).enumerate() {
                    col2im(dcols, d, columns, s * pix, dx_s);
                }
            }
        }
    };
    let total = if parallel_over_groups(d) {
        let groups = dx
            .par_chunks_mut(group * sample_in)
            .zip(x.par_chunks(group * sample_in))
            .zip(g.par_chunks(group * d.o * pix));
        groups
            .fold(
                || Scratch::new(d, true),
                |mut sc, ((dx_g, x_g), g_g)| {
                    one(&mut sc, x_g, g_g, dx_g, false);
                    sc
                },
            )
            .reduce_with(Scratch::add)
    } else {
        let mut sc = Scratch::new(d, true);
        let groups = dx
            .chunks_mut(group * sample_in)
            .zip(x.chunks(group * sample_in))
            .zip(g.chunks(group * d.o * pix));
        for ((dx_g, x_g), g_g) in groups {
            one(&mut sc, x_g, g_g, dx_g, true);
        }
        Some(sc)
    };
    let total = total.unwrap_or_else(|| Scratch::new(d, true));
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

/// Unfolds one sample x [C,H,W] into columns `at..at + Ho·Wo` of cols [C·kh·kw, columns]:
/// row (c,i,j) holds, for every output pixel, the input value under kernel tap (i,j) there,
/// 0 where that is padding.
fn im2col<T: Elem>(x: &[T], d: &Conv2dDims, cols: &mut [T], columns: usize, at: usize) {
    let (s, p) = (d.stride, d.padding);
    for r in 0..d.patch_len() {
        let row = &mut cols[r * columns + at..][..d.out_pixels()];
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

/// The adjoint of [`im2col`]: adds every entry of columns `at..at + Ho·Wo` of cols
/// [C·kh·kw, columns] onto the input position it was read from (positions read by several
/// windows sum their gradients).
fn col2im<T: Elem>(cols: &[T], d: &Conv2dDims, columns: usize, at: usize, dx: &mut [T]) {
    let (s, p) = (d.stride, d.padding);
    for r in 0..d.patch_len() {
        let row = &cols[r * columns + at..][..d.out_pixels()];
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
