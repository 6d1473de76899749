//! Lanes: the `n` values along one axis of a tensor split as (outer, n, inner); element k of
//! lane (o, i) sits at (o * n + k) * inner + i. Ops that act on each lane as a whole (softmax,
//! l2 normalisation) write a row function and let [`map_lanes`] feed it.
use rayon::prelude::*;

use crate::ops::CPU_PAR_MIN;
use crate::Elem;

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
