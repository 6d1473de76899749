//! Batch-norm kernels on x viewed as [n, c, s] (s = H * W, or 1 for [N, C] inputs):
//! per-channel reductions run in parallel over channels, elementwise passes over samples.
use rayon::prelude::*;

use crate::ops::CPU_PAR_MIN;
use crate::{CpuStorage, Elem};

/// [N, C, S] extents of a batch-norm input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub n: usize,
    pub c: usize,
    pub s: usize,
}

impl Layout {
    /// Values per channel.
    fn count(self) -> usize {
        self.n * self.s
    }
    /// Channels fewer than this per rayon task cost more to split than to run.
    fn min_channels(self) -> usize {
        (CPU_PAR_MIN / self.count().max(1)).max(1)
    }
    /// Samples fewer than this per rayon task cost more to split than to run.
    fn min_samples(self) -> usize {
        (CPU_PAR_MIN / (self.c * self.s).max(1)).max(1)
    }
}

/// Per-channel reduction of f(value index) over the n * s values of channel `ch`.
fn channel_sum<T: Elem>(l: Layout, ch: usize, f: impl Fn(usize) -> T) -> T {
    let mut acc = T::zero();
    for i in 0..l.n {
        let base = (i * l.c + ch) * l.s;
        for j in base..base + l.s {
            acc += f(j);
        }
    }
    acc
}

/// [mean, biased variance] of every channel over the batch (and space).
pub(crate) fn batch_stats(x: &CpuStorage, l: Layout) -> [CpuStorage; 2] {
    match x {
        CpuStorage::F32(x) => stats(x, l).map(CpuStorage::F32),
        CpuStorage::F64(x) => stats(x, l).map(CpuStorage::F64),
    }
}

fn stats<T: Elem>(x: &[T], l: Layout) -> [Vec<T>; 2] {
    let inv_count = T::one() / T::c(l.count() as f64);
    let (mean, var) = (0..l.c)
        .into_par_iter()
        .with_min_len(l.min_channels())
        .map(|ch| {
            // Two passes (mean, then squared deviations) avoid the cancellation of E[x²]-E[x]².
            let mean = channel_sum(l, ch, |j| x[j]) * inv_count;
            let var = channel_sum(l, ch, |j| (x[j] - mean) * (x[j] - mean)) * inv_count;
            (mean, var)
        })
        .unzip();
    [mean, var]
}

/// y = (x - mean[c]) * rstd[c] * weight[c] + bias[c].
pub(crate) fn normalize(
    x: &CpuStorage,
    mean: &CpuStorage,
    rstd: &CpuStorage,
    weight: &CpuStorage,
    bias: &CpuStorage,
    l: Layout,
) -> CpuStorage {
    match x {
        CpuStorage::F32(x) => CpuStorage::F32(normalize_t(
            x,
            [mean, rstd, weight, bias].map(|s| s.as_slice()),
            l,
        )),
        CpuStorage::F64(x) => CpuStorage::F64(normalize_t(
            x,
            [mean, rstd, weight, bias].map(|s| s.as_slice()),
            l,
        )),
    }
}

fn normalize_t<T: Elem>(x: &[T], [mean, rstd, weight, bias]: [&[T]; 4], l: Layout) -> Vec<T> {
    let mut y = vec![T::zero(); x.len()];
    if y.is_empty() {
        return y;
    }
    y.par_chunks_mut(l.c * l.s)
        .zip(x.par_chunks(l.c * l.s))
        .with_min_len(l.min_samples())
        .for_each(|(y, x)| {
            for ch in 0..l.c {
                let scale = rstd[ch] * weight[ch];
                let range = ch * l.s..(ch + 1) * l.s;
                for (y, &x) in y[range.clone()].iter_mut().zip(&x[range]) {
                    *y = (x - mean[ch]) * scale + bias[ch];
                }
            }
        });
    y
}

/// [dx, dweight, dbias]. `training` says whether mean and rstd were batch statistics (and
/// so depend on x) or running statistics (constants).
pub(crate) fn backward(
    x: &CpuStorage,
    g: &CpuStorage,
    [mean, rstd, weight]: [&CpuStorage; 3],
    l: Layout,
    training: bool,
) -> [CpuStorage; 3] {
    match x {
        CpuStorage::F32(x) => backward_t(
            x,
            g.as_slice(),
            [mean, rstd, weight].map(|s| s.as_slice()),
            l,
            training,
        )
        .map(CpuStorage::F32),
        CpuStorage::F64(x) => backward_t(
            x,
            g.as_slice(),
            [mean, rstd, weight].map(|s| s.as_slice()),
            l,
            training,
        )
        .map(CpuStorage::F64),
    }
}

/// With x̂ = (x - mean) * rstd: dbias = Σ g and dweight = Σ g x̂ per channel. In eval mode
/// y is affine in x, dx = g * weight * rstd. In training mode mean and rstd move with x too:
/// dx = weight * rstd * (g - mean(g) - x̂ * mean(g x̂)), means over the channel's values.
fn backward_t<T: Elem>(
    x: &[T],
    g: &[T],
    [mean, rstd, weight]: [&[T]; 3],
    l: Layout,
    training: bool,
) -> [Vec<T>; 3] {
    let xhat = |ch: usize, j: usize| (x[j] - mean[ch]) * rstd[ch];
    let (dbias, dweight): (Vec<T>, Vec<T>) = (0..l.c)
        .into_par_iter()
        .with_min_len(l.min_channels())
        .map(|ch| {
            (
                channel_sum(l, ch, |j| g[j]),
                channel_sum(l, ch, |j| g[j] * xhat(ch, j)),
            )
        })
        .unzip();
    let mut dx = vec![T::zero(); x.len()];
    if dx.is_empty() {
        return [dx, dweight, dbias];
    }
    let inv_count = T::one() / T::c(l.count() as f64);
    dx.par_chunks_mut(l.c * l.s)
        .enumerate()
        .with_min_len(l.min_samples())
        .for_each(|(i, dx)| {
            for ch in 0..l.c {
                let scale = weight[ch] * rstd[ch];
                let base = (i * l.c + ch) * l.s;
                for (k, d) in dx[ch * l.s..(ch + 1) * l.s].iter_mut().enumerate() {
                    let j = base + k;
                    *d = if training {
                        scale
                            * (g[j] - dbias[ch] * inv_count - xhat(ch, j) * dweight[ch] * inv_count)
                    } else {
                        scale * g[j]
                    };
                }
            }
        });
    [dx, dweight, dbias]
}
