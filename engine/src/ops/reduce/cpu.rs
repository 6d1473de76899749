use rayon::prelude::*;

use super::ReduceOp;
use crate::ops::CPU_PAR_MIN;
use crate::{map_cpu, CpuStorage, Elem, Shape};

pub(crate) fn reduce_axis(
    s: &CpuStorage,
    outer: usize,
    n: usize,
    inner: usize,
    op: ReduceOp,
) -> CpuStorage {
    map_cpu!(s, |x| reduce(x, outer, n, inner, op))
}

fn reduce<T: Elem>(x: &[T], outer: usize, n: usize, inner: usize, op: ReduceOp) -> Vec<T> {
    let mut out = vec![T::zero(); outer * inner];
    let one_outer = |o: usize, dst: &mut [T]| {
        let base = &x[o * n * inner..(o + 1) * n * inner];
        match op {
            ReduceOp::Sum => {
                for k in 0..n {
                    for (d, &v) in dst.iter_mut().zip(&base[k * inner..(k + 1) * inner]) {
                        *d += v;
                    }
                }
            }
            ReduceOp::Max => {
                dst.copy_from_slice(&base[..inner]);
                for k in 1..n {
                    for (d, &v) in dst.iter_mut().zip(&base[k * inner..(k + 1) * inner]) {
                        if v > *d || v.is_nan() {
                            *d = v;
                        }
                    }
                }
            }
        }
    };
    if inner == 0 {
        return out;
    }
    if x.len() >= CPU_PAR_MIN && outer > 1 {
        out.par_chunks_mut(inner)
            .enumerate()
            .for_each(|(o, d)| one_outer(o, d));
    } else {
        out.chunks_mut(inner)
            .enumerate()
            .for_each(|(o, d)| one_outer(o, d));
    }
    out
}

pub(crate) fn max_backward(
    x: &CpuStorage,
    out: &CpuStorage,
    g: &CpuStorage,
    outer: usize,
    n: usize,
    inner: usize,
) -> CpuStorage {
    match (x, out, g) {
        (CpuStorage::F32(x), CpuStorage::F32(m), CpuStorage::F32(g)) => {
            CpuStorage::F32(route_to_argmax(x, m, g, outer, n, inner))
        }
        (CpuStorage::F64(x), CpuStorage::F64(m), CpuStorage::F64(g)) => {
            CpuStorage::F64(route_to_argmax(x, m, g, outer, n, inner))
        }
        _ => unreachable!("dtypes are checked before dispatch"),
    }
}

fn route_to_argmax<T: Elem>(
    x: &[T],
    m: &[T],
    g: &[T],
    outer: usize,
    n: usize,
    inner: usize,
) -> Vec<T> {
    let mut dx = vec![T::zero(); x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let target = m[o * inner + i];
            if let Some(k) = (0..n).find(|&k| {
                let v = x[(o * n + k) * inner + i];
                v == target || (v.is_nan() && target.is_nan())
            }) {
                dx[(o * n + k) * inner + i] = g[o * inner + i];
            }
        }
    }
    dx
}

/// How a small shape sits inside the broadcast shape it expands to. Most broadcasts in a
/// network are one of the first two (a bias over rows, a per-row statistic over columns), and
/// those need no per-element index arithmetic.
enum Pattern {
    /// small = [.., 1, 1, d_k, .., d_r]: big is `copies` consecutive copies of small.
    Tiled {
        copies: usize,
    },
    /// small = [d_0, .., d_j, 1, .., 1]: each element of small spans `run` consecutive elements.
    Spread {
        run: usize,
    },
    General,
}

fn pattern(small: &Shape, big: &Shape) -> Pattern {
    let pad = big.rank() - small.rank();
    let dims: Vec<usize> = std::iter::repeat_n(1, pad)
        .chain(small.dims().iter().copied())
        .collect();
    let matches = |i: usize| dims[i] == big.dims()[i];
    let first_match = (0..dims.len()).find(|&i| matches(i)).unwrap_or(dims.len());
    if (0..first_match).all(|i| dims[i] == 1) && (first_match..dims.len()).all(matches) {
        return Pattern::Tiled {
            copies: big.dims()[..first_match].iter().product(),
        };
    }
    let last_match = (0..dims.len())
        .rev()
        .find(|&i| matches(i))
        .map_or(0, |i| i + 1);
    if (0..last_match).all(matches) && (last_match..dims.len()).all(|i| dims[i] == 1) {
        return Pattern::Spread {
            run: big.dims()[last_match..].iter().product(),
        };
    }
    Pattern::General
}

/// Sums `from`-shaped values into a `to`-shaped result, where `to` broadcasts to `from`.
pub(crate) fn sum_to(s: &CpuStorage, from: &Shape, to: &Shape) -> CpuStorage {
    map_cpu!(s, |x| {
        let mut out = vec![Default::default(); to.numel()];
        match pattern(to, from) {
            Pattern::Tiled { .. } if !out.is_empty() => {
                for chunk in x.chunks(out.len()) {
                    out.iter_mut().zip(chunk).for_each(|(o, &v)| *o += v);
                }
            }
            Pattern::Spread { run } if run > 0 => {
                out.iter_mut()
                    .zip(x.chunks(run))
                    .for_each(|(o, c)| *o = c.iter().copied().sum());
            }
            _ => {
                let strides = to.broadcast_strides(from);
                for_each_index(from, |flat, idx| {
                    let o: usize = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
                    out[o] += x[flat];
                });
            }
        }
        out
    })
}

pub(crate) fn broadcast_to(s: &CpuStorage, from: &Shape, to: &Shape) -> CpuStorage {
    map_cpu!(s, |x| {
        match pattern(from, to) {
            Pattern::Tiled { copies } => x.repeat(copies),
            Pattern::Spread { run } => x
                .iter()
                .flat_map(|&v| std::iter::repeat_n(v, run))
                .collect(),
            Pattern::General => {
                let strides = from.broadcast_strides(to);
                let mut out = vec![Default::default(); to.numel()];
                for_each_index(to, |flat, idx| {
                    let i: usize = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
                    out[flat] = x[i];
                });
                out
            }
        }
    })
}

/// Visits every multi-index of `shape` in row-major order with its flat offset.
pub(crate) fn for_each_index(shape: &Shape, mut f: impl FnMut(usize, &[usize])) {
    let dims = shape.dims();
    let mut idx = vec![0usize; dims.len()];
    for flat in 0..shape.numel() {
        f(flat, &idx);
        for d in (0..dims.len()).rev() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}
