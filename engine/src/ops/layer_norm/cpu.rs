//! Layer-norm kernels over rows of `d` values (the last dimension), rayon-parallel over rows.
use rayon::prelude::*;

use crate::ops::CPU_PAR_MIN;
use crate::{CpuStorage, Elem};

/// Rows fewer than this per rayon task cost more to split than to run.
fn min_rows(d: usize) -> usize {
    (CPU_PAR_MIN / d.max(1)).max(1)
}

/// y = (x - mean) * rstd * weight + bias per row, with the per-row mean and
/// rstd = 1 / sqrt(var + eps) (biased variance, as PyTorch) that the backward pass needs.
pub(crate) fn forward(
    x: &CpuStorage,
    weight: Option<&CpuStorage>,
    bias: Option<&CpuStorage>,
    d: usize,
    eps: f64,
) -> [CpuStorage; 3] {
    match x {
        CpuStorage::F32(x) => forward_rows(
            x,
            weight.map(|w| w.as_slice()),
            bias.map(|b| b.as_slice()),
            d,
            eps,
        )
        .map(CpuStorage::F32),
        CpuStorage::F64(x) => forward_rows(
            x,
            weight.map(|w| w.as_slice()),
            bias.map(|b| b.as_slice()),
            d,
            eps,
        )
        .map(CpuStorage::F64),
        CpuStorage::F16(_) => unreachable!("F16 reaches only the rules that read f16"),
    }
}

fn forward_rows<T: Elem>(
    x: &[T],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    d: usize,
    eps: f64,
) -> [Vec<T>; 3] {
    let rows = x.len().checked_div(d).unwrap_or(0);
    let mut y = vec![T::zero(); x.len()];
    let mut mean = vec![T::zero(); rows];
    let mut rstd = vec![T::zero(); rows];
    if rows == 0 {
        return [y, mean, rstd];
    }
    let inv_d = T::one() / T::c(d as f64);
    y.par_chunks_mut(d)
        .zip(mean.par_iter_mut())
        .zip(rstd.par_iter_mut())
        .enumerate()
        .with_min_len(min_rows(d))
        .for_each(|(r, ((y, mean), rstd))| {
            let x = &x[r * d..(r + 1) * d];
            // Two passes (mean, then squared deviations) avoid the cancellation of E[x²]-E[x]².
            let mu = x.iter().copied().sum::<T>() * inv_d;
            let var = x.iter().map(|&v| (v - mu) * (v - mu)).sum::<T>() * inv_d;
            let rs = T::one() / (var + T::c(eps)).sqrt();
            for (j, (out, &v)) in y.iter_mut().zip(x).enumerate() {
                let w = weight.map_or(T::one(), |w| w[j]);
                let b = bias.map_or(T::zero(), |b| b[j]);
                *out = (v - mu) * rs * w + b;
            }
            *mean = mu;
            *rstd = rs;
        });
    [y, mean, rstd]
}

/// [dx, dweight, dbias] from x, the weight, the output gradient and the saved mean / rstd.
pub(crate) fn backward(
    x: &CpuStorage,
    weight: Option<&CpuStorage>,
    g: &CpuStorage,
    mean: &CpuStorage,
    rstd: &CpuStorage,
    d: usize,
) -> [CpuStorage; 3] {
    match x {
        CpuStorage::F32(x) => backward_rows(
            x,
            weight.map(|w| w.as_slice()),
            g.as_slice(),
            mean.as_slice(),
            rstd.as_slice(),
            d,
        )
        .map(CpuStorage::F32),
        CpuStorage::F64(x) => backward_rows(
            x,
            weight.map(|w| w.as_slice()),
            g.as_slice(),
            mean.as_slice(),
            rstd.as_slice(),
            d,
        )
        .map(CpuStorage::F64),
        CpuStorage::F16(_) => unreachable!("F16 reaches only the rules that read f16"),
    }
}

/// One pass over rows. With x̂ = (x - mean) * rstd and ĝ = g * weight:
///   dx = rstd * (ĝ - mean(ĝ) - x̂ * mean(ĝ x̂))   (the normalisation's Jacobian),
///   dweight = Σ_rows g x̂,  dbias = Σ_rows g   (accumulated per rayon task, then summed).
fn backward_rows<T: Elem>(
    x: &[T],
    weight: Option<&[T]>,
    g: &[T],
    mean: &[T],
    rstd: &[T],
    d: usize,
) -> [Vec<T>; 3] {
    let mut dx = vec![T::zero(); x.len()];
    if dx.is_empty() {
        return [dx, vec![T::zero(); d], vec![T::zero(); d]];
    }
    let inv_d = T::one() / T::c(d as f64);
    let zeros = || (vec![T::zero(); d], vec![T::zero(); d]);
    let (dweight, dbias) = dx
        .par_chunks_mut(d)
        .enumerate()
        .with_min_len(min_rows(d))
        .fold(zeros, |(mut dw, mut db), (r, dx)| {
            let (x, g) = (&x[r * d..(r + 1) * d], &g[r * d..(r + 1) * d]);
            let (mu, rs) = (mean[r], rstd[r]);
            let xhat = |j: usize| (x[j] - mu) * rs;
            let ghat = |j: usize| g[j] * weight.map_or(T::one(), |w| w[j]);
            let mut mean_ghat = T::zero();
            let mut mean_ghat_xhat = T::zero();
            for j in 0..d {
                mean_ghat += ghat(j);
                mean_ghat_xhat += ghat(j) * xhat(j);
                dw[j] += g[j] * xhat(j);
                db[j] += g[j];
            }
            mean_ghat *= inv_d;
            mean_ghat_xhat *= inv_d;
            for (j, out) in dx.iter_mut().enumerate() {
                *out = rs * (ghat(j) - mean_ghat - xhat(j) * mean_ghat_xhat);
            }
            (dw, db)
        })
        .reduce(zeros, |(mut dw, mut db), (dw2, db2)| {
            for j in 0..d {
                dw[j] += dw2[j];
                db[j] += db2[j];
            }
            (dw, db)
        });
    [dx, dweight, dbias]
}
