//! CPU pooling: one channel plane at a time, rayon over the planes.
use std::ops::Range;

use rayon::prelude::*;

use super::{Pool2dDims, PoolKind};
use crate::ops::CPU_PAR_MIN;
use crate::{map_cpu, CpuStorage, Elem};

/// Input rows (or columns) under output position `o`'s window, with the padding cut off.
fn window(o: usize, size: usize, d: &Pool2dDims) -> Range<usize> {
    let start = (o * d.stride).saturating_sub(d.padding);
    let end = (o * d.stride + d.kernel)
        .saturating_sub(d.padding)
        .min(size);
    start..end
}

pub(crate) fn forward(x: &CpuStorage, kind: PoolKind, d: &Pool2dDims) -> CpuStorage {
    fn typed<T: Elem>(x: &[T], kind: PoolKind, d: &Pool2dDims) -> Vec<T> {
        let mut y = vec![T::zero(); d.n * d.c * d.ho * d.wo];
        let (in_plane, out_plane) = (d.h * d.w, d.ho * d.wo);
        let one = |y: &mut [T], x: &[T]| match kind {
            PoolKind::Max => max_plane(x, y, d),
            PoolKind::Avg => avg_plane(x, y, d),
        };
        if x.len() >= CPU_PAR_MIN {
            y.par_chunks_mut(out_plane)
                .zip(x.par_chunks(in_plane))
                .for_each(|(y, x)| one(y, x));
        } else {
            for (y, x) in y.chunks_mut(out_plane).zip(x.chunks(in_plane)) {
                one(y, x);
            }
        }
        y
    }
    map_cpu!(x, |x| typed(x, kind, d))
}

pub(crate) fn backward(
    x: &CpuStorage,
    g: &CpuStorage,
    kind: PoolKind,
    d: &Pool2dDims,
) -> CpuStorage {
    fn typed<T: Elem>(x: &[T], g: &[T], kind: PoolKind, d: &Pool2dDims) -> Vec<T> {
        let mut dx = vec![T::zero(); x.len()];
        let (in_plane, out_plane) = (d.h * d.w, d.ho * d.wo);
        let one = |dx: &mut [T], x: &[T], g: &[T]| match kind {
            PoolKind::Max => max_plane_backward(x, g, dx, d),
            PoolKind::Avg => avg_plane_backward(g, dx, d),
        };
        if x.len() >= CPU_PAR_MIN {
            dx.par_chunks_mut(in_plane)
                .zip(x.par_chunks(in_plane))
                .zip(g.par_chunks(out_plane))
                .for_each(|((dx, x), g)| one(dx, x, g));
        } else {
            let planes = dx.chunks_mut(in_plane).zip(x.chunks(in_plane));
            for ((dx, x), g) in planes.zip(g.chunks(out_plane)) {
                one(dx, x, g);
            }
        }
        dx
    }
    match (x, g) {
        (CpuStorage::F32(x), CpuStorage::F32(g)) => CpuStorage::F32(typed(x, g, kind, d)),
        (CpuStorage::F64(x), CpuStorage::F64(g)) => CpuStorage::F64(typed(x, g, kind, d)),
        _ => unreachable!("dtypes are checked before dispatch"),
    }
}

/// Position in the plane of the window's maximum: the first in row-major order on ties; a
/// NaN wins (it propagates, as in PyTorch). Windows are never empty: padding <= kernel / 2.
fn argmax<T: Elem>(x: &[T], oy: usize, ox: usize, d: &Pool2dDims) -> usize {
    let (rows, cols) = (window(oy, d.h, d), window(ox, d.w, d));
    let mut best = rows.start * d.w + cols.start;
    for iy in rows {
        for i in cols.clone().map(|ix| iy * d.w + ix) {
            if x[i] > x[best] || (x[i].is_nan() && !x[best].is_nan()) {
                best = i;
            }
        }
    }
    best
}

fn max_plane<T: Elem>(x: &[T], y: &mut [T], d: &Pool2dDims) {
    for (oy, row) in y.chunks_exact_mut(d.wo).enumerate() {
        for (ox, out) in row.iter_mut().enumerate() {
            *out = x[argmax(x, oy, ox, d)];
        }
    }
}

fn max_plane_backward<T: Elem>(x: &[T], g: &[T], dx: &mut [T], d: &Pool2dDims) {
    for (oy, row) in g.chunks_exact(d.wo).enumerate() {
        for (ox, &gv) in row.iter().enumerate() {
            dx[argmax(x, oy, ox, d)] += gv;
        }
    }
}

fn avg_plane<T: Elem>(x: &[T], y: &mut [T], d: &Pool2dDims) {
    let scale = T::one() / T::c((d.kernel * d.kernel) as f64);
    for (oy, row) in y.chunks_exact_mut(d.wo).enumerate() {
        for (ox, out) in row.iter_mut().enumerate() {
            let cols = window(ox, d.w, d);
            let sum: T = window(oy, d.h, d)
                .map(|iy| x[iy * d.w..][cols.clone()].iter().copied().sum::<T>())
                .sum();
            *out = sum * scale;
        }
    }
}

fn avg_plane_backward<T: Elem>(g: &[T], dx: &mut [T], d: &Pool2dDims) {
    let scale = T::one() / T::c((d.kernel * d.kernel) as f64);
    for (oy, row) in g.chunks_exact(d.wo).enumerate() {
        for (ox, &gv) in row.iter().enumerate() {
            let cols = window(ox, d.w, d);
            for iy in window(oy, d.h, d) {
                for v in &mut dx[iy * d.w..][cols.clone()] {
                    *v += gv * scale;
                }
            }
        }
    }
}
