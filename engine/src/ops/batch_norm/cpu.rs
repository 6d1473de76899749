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

/// Σ f(x, g) over the n * s positions of channel `ch` of two [n, c, s] arrays.
fn channel_sum<T: Elem>(l: Layout, ch: usize, [x, g]: [&[T]; 2], f: impl Fn(T, T) -> T) -> T {
    (0..l.n)
        .map(|i| {
            let range = (i * l.c + ch) * l.s..(i * l.c + ch + 1) * l.s;
            sum8(&x[range.clone()], &g[range], &f)
        })
        .sum()
}

/// Σ f(x_i, g_i) with eight running partial sums: one running sum would wait on each add's
/// latency; eight independent ones pipeline (and vectorise), and round a little better.
fn sum8<T: Elem>(x: &[T], g: &[T], f: impl Fn(T, T) -> T) -> T {
    let mut partial = [T::zero(); 8];
    let (xs, gs) = (x.chunks_exact(8), g.chunks_exact(8));
    let (x_rest, g_rest) = (xs.remainder(), gs.remainder());
    for (x, g) in xs.zip(gs) {
        for k in 0..8 {
            partial[k] += f(x[k], g[k]);
        }
    }
    let rest: T = x_rest.iter().zip(g_rest).map(|(&x, &g)| f(x, g)).sum();
    partial.into_iter().sum::<T>() + rest
}

/// y = a[ch] u + b[ch] v + c[ch] over [n, c, s], parallel over samples. Every elementwise
/// pass of batch norm is linear per channel: the forward (u = x, b = 0) in both modes, and
/// dx (u = x, v = g) in both modes.
fn channel_linear<T: Elem>(l: Layout, [u, v]: [&[T]; 2], [a, b, c]: [&[T]; 3]) -> Vec<T> {
    let mut y = vec![T::zero(); u.len()];
    if y.is_empty() {
        return y;
    }
    let sample = l.c * l.s;
    y.par_chunks_mut(sample)
        .zip(u.par_chunks(sample).zip(v.par_chunks(sample)))
        .with_min_len(l.min_samples())
        .for_each(|(y, (u, v))| {
            for ch in 0..l.c {
                let range = ch * l.s..(ch + 1) * l.s;
                let (a, b, c) = (a[ch], b[ch], c[ch]);
                for ((y, &u), &v) in y[range.clone()]
                    .iter_mut()
                    .zip(&u[range.clone()])
                    .zip(&v[range])
                {
                    *y = a * u + b * v + c;
                }
            }
        });
    y
}

/// [mean, biased variance] of every channel over the batch (and space).
pub(crate) fn batch_stats(x: &CpuStorage, l: Layout) -> [CpuStorage; 2] {
    match x {
        CpuStorage::F32(x) => stats(x, l).map(CpuStorage::F32),
        CpuStorage::F64(x) => stats(x, l).map(CpuStorage::F64),
        CpuStorage::F16(_) => unreachable!("F16 reaches only the rules that read f16"),
    }
}

fn stats<T: Elem>(x: &[T], l: Layout) -> [Vec<T>; 2] {
    let inv_count = T::one() / T::c(l.count() as f64);
    let (mean, var) = (0..l.c)
        .into_par_iter()
        .with_min_len(l.min_channels())
        .map(|ch| {
            // Two passes (mean, then squared deviations) avoid the cancellation of E[x²]-E[x]².
            let mean = channel_sum(l, ch, [x, x], |x, _| x) * inv_count;
            let var = channel_sum(l, ch, [x, x], |x, _| (x - mean) * (x - mean));
            (mean, var * inv_count)
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
        CpuStorage::F16(_) => unreachable!("F16 reaches only the rules that read f16"),
    }
}

fn normalize_t<T: Elem>(x: &[T], [mean, rstd, weight, bias]: [&[T]; 4], l: Layout) -> Vec<T> {
    let scale: Vec<T> = (0..l.c).map(|ch| rstd[ch] * weight[ch]).collect();
    let shift: Vec<T> = (0..l.c).map(|ch| bias[ch] - mean[ch] * scale[ch]).collect();
    channel_linear(l, [x, x], [&scale, &vec![T::zero(); l.c], &shift])
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
        CpuStorage::F16(_) => unreachable!("F16 reaches only the rules that read f16"),
    }
}

/// With x̂ = (x - mean) * rstd: dbias = Σ g and dweight = Σ g x̂ per channel. In eval mode
/// y is affine in x, dx = g * weight * rstd. In training mode mean and rstd move with x too:
/// dx = weight * rstd * (g - mean(g) - x̂ * mean(g x̂)), means over the channel's values.
/// Both are linear per channel in (x, g), which is how they run.
fn backward_t<T: Elem>(
    x: &[T],
    g: &[T],
    [mean, rstd, weight]: [&[T]; 3],
    l: Layout,
    training: bool,
) -> [Vec<T>; 3] {
    let (dbias, sum_g_xc): (Vec<T>, Vec<T>) = (0..l.c)
        .into_par_iter()
        .with_min_len(l.min_channels())
        .map(|ch| {
            let sum_g = channel_sum(l, ch, [x, g], |_, g| g);
            let sum_g_xc = channel_sum(l, ch, [x, g], |x, g| g * (x - mean[ch]));
            (sum_g, sum_g_xc)
        })
        .unzip();
    let dweight: Vec<T> = (0..l.c).map(|ch| sum_g_xc[ch] * rstd[ch]).collect();
    let inv_count = T::one() / T::c(l.count() as f64);
    // dx = a x + b g + c per channel.
    let (mut a, mut b, mut c) = (
        vec![T::zero(); l.c],
        vec![T::zero(); l.c],
        vec![T::zero(); l.c],
    );
    for ch in 0..l.c {
        b[ch] = weight[ch] * rstd[ch];
        if training {
            // b * (g - mean(g) - (x - mean) * rstd * mean(g x̂)).
            let slope = b[ch] * rstd[ch] * dweight[ch] * inv_count;
            a[ch] = -slope;
            c[ch] = slope * mean[ch] - b[ch] * dbias[ch] * inv_count;
        }
    }
    let dx = channel_linear(l, [x, g], [&a, &b, &c]);
    [dx, dweight, dbias]
}
