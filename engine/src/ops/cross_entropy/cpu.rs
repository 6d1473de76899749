use rayon::prelude::*;

use crate::ops::softmax::cpu::log_softmax_row;
use crate::ops::CPU_PAR_MIN;
use crate::{CpuStorage, Elem};

/// (the mean loss as a one-element storage, softmax probabilities [M, C]).
pub(crate) fn forward(
    logits: &CpuStorage,
    labels: &[usize],
    smoothing: f64,
) -> (CpuStorage, CpuStorage) {
    match logits {
        CpuStorage::F32(x) => {
            let (loss, p) = forward_rows(x, labels, smoothing);
            (CpuStorage::F32(vec![loss]), CpuStorage::F32(p))
        }
        CpuStorage::F64(x) => {
            let (loss, p) = forward_rows(x, labels, smoothing);
            (CpuStorage::F64(vec![loss]), CpuStorage::F64(p))
        }
        CpuStorage::F16(_) => unreachable!("F16 reaches only the rules that read f16"),
    }
}

fn forward_rows<T: Elem>(x: &[T], labels: &[usize], smoothing: f64) -> (T, Vec<T>) {
    let m = labels.len();
    let c = x.len() / m;
    let (on_label, uniform) = (T::c(1.0 - smoothing), T::c(smoothing / c as f64));
    let mut probs = x.to_vec();
    let total: T = probs
        .par_chunks_mut(c)
        .zip(labels)
        .with_min_len((CPU_PAR_MIN / c).max(1))
        .map(|(row, &y)| {
            log_softmax_row(row);
            let sum_log_p: T = row.iter().copied().sum();
            let loss = -(on_label * row[y] + uniform * sum_log_p);
            for v in row.iter_mut() {
                *v = v.exp();
            }
            loss
        })
        .sum();
    (total / T::c(m as f64), probs)
}

/// d(mean loss)/d(logits) * g = (p - target) * g / M, target = (1 - e) onehot(y) + e / C.
pub(crate) fn backward(
    probs: &CpuStorage,
    g: &CpuStorage,
    labels: &[usize],
    smoothing: f64,
) -> CpuStorage {
    match (probs, g) {
        (CpuStorage::F32(p), CpuStorage::F32(g)) => {
            CpuStorage::F32(backward_rows(p, g[0], labels, smoothing))
        }
        (CpuStorage::F64(p), CpuStorage::F64(g)) => {
            CpuStorage::F64(backward_rows(p, g[0], labels, smoothing))
        }
        _ => unreachable!("dtypes are checked before dispatch"),
    }
}

fn backward_rows<T: Elem>(probs: &[T], g: T, labels: &[usize], smoothing: f64) -> Vec<T> {
    let m = labels.len();
    let c = probs.len() / m;
    let (on_label, uniform) = (T::c(1.0 - smoothing), T::c(smoothing / c as f64));
    let scale = g / T::c(m as f64);
    let mut dx = vec![T::zero(); probs.len()];
    dx.par_chunks_mut(c)
        .zip(probs.par_chunks(c))
        .zip(labels)
        .with_min_len((CPU_PAR_MIN / c).max(1))
        .for_each(|((dx, p), &y)| {
            for (d, &p) in dx.iter_mut().zip(p) {
                *d = (p - uniform) * scale;
            }
            dx[y] -= on_label * scale;
        });
    dx
}
