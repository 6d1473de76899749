//! Element-by-element CPU loops that LLVM vectorises: the function is a closure known at
//! compile time (no `match` on the op inside the loop), the output is written once into
//! uninitialised memory (no zero fill first: on activation-sized tensors that fill was a
//! whole extra trip through memory), and large tensors split into chunks across rayon.
//!
//! Every elementwise CPU kernel goes through [`map1`] or [`map2`]: a kernel picks its
//! closure outside the loop and hands it here.
use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::ops::CPU_PAR_MIN;
use crate::Elem;

/// Values per rayon task: 64 KB of f32, large enough that the split costs nothing next to
/// the loop, small enough that two threads share uneven work.
const CHUNK: usize = 1 << 14;

/// out[i] = f(a[i]).
pub(crate) fn map1<T: Elem>(a: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    fill(a.len(), |start, dst| {
        for (o, &x) in dst.iter_mut().zip(&a[start..]) {
            o.write(f(x));
        }
    })
}

/// out[i] = f(a[i], b[i]) for same-length `a` and `b`.
pub(crate) fn map2<T: Elem>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
    assert_eq!(a.len(), b.len(), "map2 takes same-length inputs");
    fill(a.len(), |start, dst| {
        let (a, b) = (&a[start..][..dst.len()], &b[start..][..dst.len()]);
        for ((o, &x), &y) in dst.iter_mut().zip(a).zip(b) {
            o.write(f(x, y));
        }
    })
}

/// A vector of `n` values, each chunk written by `write(first index, chunk)`, which must
/// write every element of its chunk.
fn fill<T: Elem>(n: usize, write: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    let dst = &mut out.spare_capacity_mut()[..n];
    if n >= CPU_PAR_MIN {
        dst.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, d)| write(i * CHUNK, d));
    } else {
        write(0, dst);
    }
    // SAFETY: `write` initialised every element of every chunk, and the chunks cover 0..n.
    unsafe { out.set_len(n) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes around the chunk and the parallel threshold, where an off-by-one in the chunk
    /// offsets would leave values unwritten or misplaced.
    #[test]
    fn every_element_is_written_once_at_its_index() {
        for n in [
            0,
            1,
            7,
            CHUNK - 1,
            CHUNK + 1,
            CPU_PAR_MIN - 1,
            CPU_PAR_MIN + 3,
            3 * CHUNK + 5,
        ] {
            let a: Vec<f64> = (0..n).map(|i| i as f64).collect();
            let b: Vec<f64> = (0..n).map(|i| (2 * i) as f64 + 0.5).collect();
            let one = map1(&a, |x| x * 3.0 + 1.0);
            let two = map2(&a, &b, |x, y| y - x);
            assert_eq!(one.len(), n);
            assert_eq!(two.len(), n);
            for i in 0..n {
                assert_eq!(one[i], i as f64 * 3.0 + 1.0, "map1 at {i} of {n}");
                assert_eq!(two[i], i as f64 + 0.5, "map2 at {i} of {n}");
            }
        }
    }
}
