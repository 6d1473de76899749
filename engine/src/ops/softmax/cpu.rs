//! Softmax kernels. The softmax axis splits a tensor into lanes of `n` values; element k of
//! lane (o, i) sits at (o * n + k) * inner + i. The row functions below work on one
//! contiguous lane and are shared with attention and cross entropy.
use rayon::prelude::*;

use crate::ops::CPU_PAR_MIN;
use crate::{map_cpu, CpuStorage, Elem};

/// softmax (or log_softmax when `log`) of every lane.
pub(crate) fn softmax(s: &CpuStorage, n: usize, inner: usize, log: bool) -> CpuStorage {
    map_cpu!(s, |x| map_lanes([x], n, inner, |[row], out| {
        out.copy_from_slice(row);
        if log {
            log_softmax_row(out);
        } else {
            softmax_row(out);
        }
    }))
}

/// The input gradient of softmax (or log_softmax) from its output `y` and output gradient `g`.
pub(crate) fn softmax_backward(
    y: &CpuStorage,
    g: &CpuStorage,
    n: usize,
    inner: usize,
    log: bool,
) -> CpuStorage {
    match (y, g) {
        (CpuStorage::F32(y), CpuStorage::F32(g)) => {
            CpuStorage::F32(softmax_backward_lanes(y, g, n, inner, log))
        }
        (CpuStorage::F64(y), CpuStorage::F64(g)) => {
            CpuStorage::F64(softmax_backward_lanes(y, g, n, inner, log))
        }
        _ => unreachable!("dtypes are checked before dispatch"),
    }
}

fn softmax_backward_lanes<T: Elem>(y: &[T], g: &[T], n: usize, inner: usize, log: bool) -> Vec<T> {
    map_lanes([y, g], n, inner, |[y, g], dx| {
        if log {
            log_softmax_row_backward(y, g, dx);
        } else {
            softmax_row_backward(y, g, dx);
        }
    })
}

/// Stable softmax of one row in place: shifting by the row maximum keeps exp() from
/// overflowing and leaves the result unchanged.
pub(crate) fn softmax_row<T: Elem>(row: &mut [T]) {
    let max = row_max(row);
    let mut sum = T::zero();
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = T::one() / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// Stable log-softmax of one row in place: (x - max) - log(sum(exp(x - max))). The two
/// subtractions stay separate: folding them into one shift would round max + log(sum) to the
/// precision of max, losing digits of small log-probabilities next to large logits.
pub(crate) fn log_softmax_row<T: Elem>(row: &mut [T]) {
    let max = row_max(row);
    let log_sum = row.iter().map(|&v| (v - max).exp()).sum::<T>().ln();
    for v in row.iter_mut() {
        *v = (*v - max) - log_sum;
    }
}

/// dx = y * (g - sum(g * y)), the softmax Jacobian-vector product.
pub(crate) fn softmax_row_backward<T: Elem>(y: &[T], g: &[T], dx: &mut [T]) {
    let dot: T = y.iter().zip(g).map(|(&y, &g)| y * g).sum();
    for ((d, &y), &g) in dx.iter_mut().zip(y).zip(g) {
        *d = y * (g - dot);
    }
}

/// dx = g - softmax * sum(g), with softmax = exp(log_softmax).
fn log_softmax_row_backward<T: Elem>(y: &[T], g: &[T], dx: &mut [T]) {
    let total: T = g.iter().copied().sum();
    for ((d, &y), &g) in dx.iter_mut().zip(y).zip(g) {
        *d = g - y.exp() * total;
    }
}

fn row_max<T: Elem>(row: &[T]) -> T {
    row.iter().copied().fold(T::neg_infinity(), T::max)
}

/// Runs `f(input lanes, output lane)` on every lane of K same-shaped inputs and collects the
/// output lanes into a tensor of the same shape. Lanes that are not contiguous (inner > 1)
/// are copied into scratch rows first, so `f` always sees contiguous rows.
pub(crate) fn map_lanes<T: Elem, const K: usize>(
    ins: [&[T]; K],
    n: usize,
    inner: usize,
    f: impl Fn([&[T]; K], &mut [T]) + Sync,
) -> Vec<T> {
    let len = ins[0].len();
    let mut out = vec![T::zero(); len];
    if len == 0 {
        return out;
    }
    let block = n * inner;
    let one_block = |o: usize, dst: &mut [T]| {
        let src: [&[T]; K] = std::array::from_fn(|j| &ins[j][o * block..(o + 1) * block]);
        if inner == 1 {
            f(src, dst);
            return;
        }
        let mut scratch: [Vec<T>; K] = std::array::from_fn(|_| vec![T::zero(); n]);
        let mut lane_out = vec![T::zero(); n];
        for i in 0..inner {
            for (buf, s) in scratch.iter_mut().zip(&src) {
                for (k, b) in buf.iter_mut().enumerate() {
                    *b = s[k * inner + i];
                }
            }
            f(std::array::from_fn(|j| &scratch[j][..]), &mut lane_out);
            for (k, &v) in lane_out.iter().enumerate() {
                dst[k * inner + i] = v;
            }
        }
    };
    if len >= CPU_PAR_MIN {
        out.par_chunks_mut(block)
            .enumerate()
            .for_each(|(o, d)| one_block(o, d));
    } else {
        out.chunks_mut(block)
            .enumerate()
            .for_each(|(o, d)| one_block(o, d));
    }
    out
}
