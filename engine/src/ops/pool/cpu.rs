//! CPU pooling: one channel plane at a time, rayon over the planes.
use std::ops::Range;

use rayon::prelude::*;

use super::Pool2dDims;
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

/// Runs `one(output plane, input plane)` for every channel plane (an "output" of backward
/// is an input-sized plane), across rayon when large.
fn planes<T: Elem, O: Send>(
    x: &[T],
    out: &mut [O],
    (in_plane, out_plane): (usize, usize),
    one: impl Fn(&mut [O], &[T]) + Sync,
) {
    if x.len() >= CPU_PAR_MIN {
        out.par_chunks_mut(out_plane)
            .zip(x.par_chunks(in_plane))
            .for_each(|(o, x)| one(o, x));
    } else {
        for (o, x) in out.chunks_mut(out_plane).zip(x.chunks(in_plane)) {
            one(o, x);
        }
    }
}

/// Each window's maximum, and where in its plane it is (for the backward scatter).
pub(crate) fn max_forward(x: &CpuStorage, d: &Pool2dDims) -> (CpuStorage, Vec<u32>) {
    fn typed<T: Elem>(x: &[T], d: &Pool2dDims) -> (Vec<T>, Vec<u32>) {
        let (in_plane, out_plane) = (d.h * d.w, d.ho * d.wo);
        let mut y = vec![T::zero(); d.n * d.c * out_plane];
        let mut at = vec![0u32; y.len()];
        let planes = |(y, at): (&mut [T], &mut [u32]), x: &[T]| max_plane(x, y, at, d);
        if x.len() >= CPU_PAR_MIN {
            y.par_chunks_mut(out_plane)
                .zip(at.par_chunks_mut(out_plane))
                .zip(x.par_chunks(in_plane))
                .for_each(|(out, x)| planes(out, x));
        } else {
            let outs = y.chunks_mut(out_plane).zip(at.chunks_mut(out_plane));
            for (out, x) in outs.zip(x.chunks(in_plane)) {
                planes(out, x);
            }
        }
        (y, at)
    }
    match x {
        CpuStorage::F32(x) => {
            let (y, at) = typed(x, d);
            (CpuStorage::F32(y), at)
        }
        CpuStorage::F64(x) => {
            let (y, at) = typed(x, d);
            (CpuStorage::F64(y), at)
        }
        CpuStorage::F16(_) => unreachable!("F16 reaches only the rules that read f16"),
    }
}

pub(crate) fn avg_forward(x: &CpuStorage, d: &Pool2dDims) -> CpuStorage {
    fn typed<T: Elem>(x: &[T], d: &Pool2dDims) -> Vec<T> {
        let mut y = vec![T::zero(); d.n * d.c * d.ho * d.wo];
        planes(x, &mut y, (d.h * d.w, d.ho * d.wo), |y, x| {
            avg_plane(x, y, d)
        });
        y
    }
    map_cpu!(x, |x| typed(x, d))
}

/// Each output's gradient added at its maximum's position.
pub(crate) fn max_backward(g: &CpuStorage, argmax: &[u32], d: &Pool2dDims) -> CpuStorage {
    fn typed<T: Elem>(g: &[T], argmax: &[u32], d: &Pool2dDims) -> Vec<T> {
        let (in_plane, out_plane) = (d.h * d.w, d.ho * d.wo);
        let mut dx = vec![T::zero(); d.n * d.c * in_plane];
        let one = |dx: &mut [T], (g, at): (&[T], &[u32])| {
            for (&gv, &i) in g.iter().zip(at) {
                dx[i as usize] += gv;
            }
        };
        if dx.len() >= CPU_PAR_MIN {
            dx.par_chunks_mut(in_plane)
                .zip(g.par_chunks(out_plane).zip(argmax.par_chunks(out_plane)))
                .for_each(|(dx, g)| one(dx, g));
        } else {
            for (dx, g) in dx
                .chunks_mut(in_plane)
                .zip(g.chunks(out_plane).zip(argmax.chunks(out_plane)))
            {
                one(dx, g);
            }
        }
        dx
    }
    map_cpu!(g, |g| typed(g, argmax, d))
}

pub(crate) fn avg_backward(g: &CpuStorage, d: &Pool2dDims) -> CpuStorage {
    fn typed<T: Elem>(g: &[T], d: &Pool2dDims) -> Vec<T> {
        let (in_plane, out_plane) = (d.h * d.w, d.ho * d.wo);
        let mut dx = vec![T::zero(); d.n * d.c * in_plane];
        planes(g, &mut dx, (out_plane, in_plane), |dx, g| {
            avg_plane_backward(g, dx, d)
        });
        dx
    }
    map_cpu!(g, |g| typed(g, d))
}

/// Position in the plane of the window's maximum and its value: the first in row-major order
/// on ties; a NaN wins (it propagates, as in PyTorch). Windows are never empty: padding <=
/// kernel / 2. The best value stays in a register and each window row is a plain slice.
#[inline]
fn argmax<T: Elem>(x: &[T], oy: usize, ox: usize, d: &Pool2dDims) -> (usize, T) {
    let (rows, cols) = (window(oy, d.h, d), window(ox, d.w, d));
    let mut best = rows.start * d.w + cols.start;
    let mut best_value = x[best];
    for iy in rows {
        let start = iy * d.w + cols.start;
        for (j, &v) in x[start..start + cols.len()].iter().enumerate() {
            if v > best_value || (v.is_nan() && !best_value.is_nan()) {
                best = start + j;
                best_value = v;
            }
        }
    }
    (best, best_value)
}

fn max_plane<T: Elem>(x: &[T], y: &mut [T], at: &mut [u32], d: &Pool2dDims) {
    let rows = y.chunks_exact_mut(d.wo).zip(at.chunks_exact_mut(d.wo));
    for (oy, (y, at)) in rows.enumerate() {
        for (ox, (y, at)) in y.iter_mut().zip(at).enumerate() {
            let (i, v) = argmax(x, oy, ox, d);
            (*y, *at) = (v, i as u32);
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
