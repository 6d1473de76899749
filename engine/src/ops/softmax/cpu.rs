//! Softmax kernels, one lane (the values along the softmax axis) at a time. The row
//! functions work on one contiguous lane and are shared with attention and cross entropy.
use crate::ops::map_lanes;
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
#[inline(always)]
pub(crate) fn softmax_row<T: Elem>(row: &mut [T]) {
    let max = row_max(row);
    // The exponentials in a pass of their own vectorise; summed as they are made they were
    // one chain of dependent additions.
    for v in row.iter_mut() {
        *v = (*v - max).exp_nonpositive();
    }
    let inv = T::one() / row_sum(row);
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// Stable log-softmax of one row in place: (x - max) - log(sum(exp(x - max))). The two
/// subtractions stay separate: folding them into one shift would round max + log(sum) to the
/// precision of max, losing digits of small log-probabilities next to large logits.
pub(crate) fn log_softmax_row<T: Elem>(row: &mut [T]) {
    let max = row_max(row);
    let log_sum = row
        .iter()
        .map(|&v| (v - max).exp_nonpositive())
        .sum::<T>()
        .ln();
    for v in row.iter_mut() {
        *v = (*v - max) - log_sum;
    }
}

/// dx = y * (g - sum(g * y)), the softmax Jacobian-vector product.
pub(crate) fn softmax_row_backward<T: Elem>(y: &[T], g: &[T], dx: &mut [T]) {
    dx.copy_from_slice(g);
    softmax_row_backward_in_place(y, dx);
}

/// [`softmax_row_backward`] with the output gradient overwritten by the input gradient.
#[inline(always)]
pub(crate) fn softmax_row_backward_in_place<T: Elem>(y: &[T], g: &mut [T]) {
    let dot = row_dot(y, g);
    for (g, &y) in g.iter_mut().zip(y) {
        *g = y * (*g - dot);
    }
}

/// dx = g - softmax * sum(g), with softmax = exp(log_softmax).
fn log_softmax_row_backward<T: Elem>(y: &[T], g: &[T], dx: &mut [T]) {
    let total: T = g.iter().copied().sum();
    for ((d, &y), &g) in dx.iter_mut().zip(y).zip(g) {
        *d = g - y.exp() * total;
    }
}

/// Row reductions keep LANES partial results, one per position modulo LANES: independent
/// operations that vectorise, where a single running value is a chain LLVM must keep in order.
const LANES: usize = 16;

#[inline(always)]
fn lanes<T: Elem>(row: &[T], init: T, step: impl Fn(T, T) -> T) -> ([T; LANES], &[T]) {
    let mut acc = [init; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = step(*a, x);
        }
    }
    (acc, tail)
}

/// The row maximum, ignoring NaN: callers subtract it from every value, so a NaN in the row
/// still makes every output NaN.
#[inline(always)]
fn row_max<T: Elem>(row: &[T]) -> T {
    let max = |a: T, x: T| if x > a { x } else { a };
    let (acc, tail) = lanes(row, T::neg_infinity(), max);
    acc.into_iter()
        .chain(tail.iter().copied())
        .fold(T::neg_infinity(), max)
}

#[inline(always)]
fn row_sum<T: Elem>(row: &[T]) -> T {
    let (acc, tail) = lanes(row, T::zero(), |a, x| a + x);
    acc.into_iter().chain(tail.iter().copied()).sum()
}

#[inline(always)]
fn row_dot<T: Elem>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: T = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(&a, &b)| a * b)
        .sum();
    for (a, b) in a_chunks.zip(b_chunks) {
        for ((s, &a), &b) in acc.iter_mut().zip(a).zip(b) {
            *s += a * b;
        }
    }
    acc.into_iter().sum::<T>() + tail
}
