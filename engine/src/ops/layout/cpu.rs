use rayon::prelude::*;

use crate::ops::CPU_PAR_MIN;
use crate::{map_cpu, CpuStorage, Elem, Shape};

/// Output dimension i is input dimension `dims[i]`, copied run by run: dimensions that stay
/// next to each other in the same order are merged first, so a permute that keeps the last
/// dimension (BEiT's heads split, [N, T, 3, H, dh] -> [3, N, H, T, dh]) copies whole rows of
/// dh values, and only a permute that moves the last dimension gathers element by element.
pub(crate) fn permute(s: &CpuStorage, shape: &Shape, dims: &[usize]) -> CpuStorage {
    let (sizes, strides) = merged_permutation(shape, dims);
    map_cpu!(s, |x| gather_strided(x, &sizes, &strides))
}

/// The output's dimensions and the input stride of each, size-1 dimensions dropped and each
/// dimension merged into the one before it where that one lies directly outside it in the
/// input too. Never empty.
fn merged_permutation(shape: &Shape, dims: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let in_strides = shape.strides();
    let (mut sizes, mut strides): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
    for &d in dims {
        let (size, stride) = (shape.dims()[d], in_strides[d]);
        if size == 1 {
            continue;
        }
        match (sizes.last_mut(), strides.last_mut()) {
            (Some(last_size), Some(last_stride)) if *last_stride == stride * size => {
                *last_size *= size;
                *last_stride = stride;
            }
            _ => {
                sizes.push(size);
                strides.push(stride);
            }
        }
    }
    if sizes.is_empty() {
        sizes.push(1);
        strides.push(1);
    }
    (sizes, strides)
}

/// out[i0, .., ik] = x[Σ ij · strides[j]] over the row-major index space `sizes`, a run of the
/// last dimension at a time; rayon over blocks of runs when large.
fn gather_strided<T: Elem>(x: &[T], sizes: &[usize], strides: &[usize]) -> Vec<T> {
    let len: usize = sizes.iter().product();
    let mut out = vec![T::zero(); len];
    let rank = sizes.len();
    let (run, run_stride) = (sizes[rank - 1], strides[rank - 1]);
    if len == 0 {
        return out;
    }
    let (outer, outer_strides) = (&sizes[..rank - 1], &strides[..rank - 1]);
    // Fills `dst`, whole runs from run number `first` on, walking the outer index like an
    // odometer.
    let fill = |first: usize, dst: &mut [T]| {
        let mut idx = vec![0; rank - 1];
        let (mut rest, mut offset) = (first, 0);
        for d in (0..rank - 1).rev() {
            idx[d] = rest % outer[d];
            rest /= outer[d];
            offset += idx[d] * outer_strides[d];
        }
        for dst in dst.chunks_exact_mut(run) {
            if run_stride == 1 {
                dst.copy_from_slice(&x[offset..offset + run]);
            } else {
                for (j, o) in dst.iter_mut().enumerate() {
                    *o = x[offset + j * run_stride];
                }
            }
            for d in (0..rank - 1).rev() {
                idx[d] += 1;
                offset += outer_strides[d];
                if idx[d] < outer[d] {
                    break;
                }
                offset -= outer[d] * outer_strides[d];
                idx[d] = 0;
            }
        }
    };
    if len >= CPU_PAR_MIN {
        let runs_per_task = (CPU_PAR_MIN / run).max(1);
        out.par_chunks_mut(runs_per_task * run)
            .enumerate()
            .for_each(|(i, dst)| fill(i * runs_per_task, dst));
    } else {
        fill(0, &mut out);
    }
    out
}

pub(crate) fn narrow(
    s: &CpuStorage,
    outer: usize,
    n: usize,
    inner: usize,
    start: usize,
    len: usize,
) -> CpuStorage {
    map_cpu!(s, |x| {
        let mut out = Vec::with_capacity(outer * len * inner);
        for o in 0..outer {
            out.extend_from_slice(&x[(o * n + start) * inner..(o * n + start + len) * inner]);
        }
        out
    })
}

/// The adjoint of narrow: `g` ([outer, len, inner]) placed at `start` along an axis of `n`
/// entries, zeros elsewhere.
pub(crate) fn pad(
    s: &CpuStorage,
    outer: usize,
    len: usize,
    inner: usize,
    start: usize,
    n: usize,
) -> CpuStorage {
    map_cpu!(s, |g| {
        let mut out = Vec::with_capacity(outer * n * inner);
        // An empty slice has no blocks to walk (and chunks of 0 do not exist).
        if len * inner > 0 {
            for block in g.chunks_exact(len * inner) {
                out.resize(out.len() + start * inner, Default::default());
                out.extend_from_slice(block);
                out.resize(out.len() + (n - start - len) * inner, Default::default());
            }
        }
        out.resize(outer * n * inner, Default::default());
        out
    })
}

/// Concatenation along an axis: `parts` are (storage, size along the axis).
pub(crate) fn concat(parts: &[(&CpuStorage, usize)], outer: usize, inner: usize) -> CpuStorage {
    fn join<T: Elem>(parts: &[(&[T], usize)], outer: usize, inner: usize) -> Vec<T> {
        let total: usize = parts.iter().map(|p| p.1).sum();
        let mut out = Vec::with_capacity(outer * total * inner);
        for o in 0..outer {
            for (x, n) in parts {
                out.extend_from_slice(&x[o * n * inner..(o + 1) * n * inner]);
            }
        }
        out
    }
    match parts[0].0 {
        CpuStorage::F32(_) => CpuStorage::F32(join(
            &parts
                .iter()
                .map(|(s, n)| (s.as_slice::<f32>(), *n))
                .collect::<Vec<_>>(),
            outer,
            inner,
        )),
        CpuStorage::F64(_) => CpuStorage::F64(join(
            &parts
                .iter()
                .map(|(s, n)| (s.as_slice::<f64>(), *n))
                .collect::<Vec<_>>(),
            outer,
            inner,
        )),
        CpuStorage::F16(_) => unreachable!("F16 reaches only the rules that read f16"),
    }
}

pub(crate) fn index_select(
    s: &CpuStorage,
    outer: usize,
    n: usize,
    inner: usize,
    idx: &[usize],
) -> CpuStorage {
    map_cpu!(s, |x| {
        let mut out = Vec::with_capacity(outer * idx.len() * inner);
        for o in 0..outer {
            for &i in idx {
                out.extend_from_slice(&x[(o * n + i) * inner..(o * n + i + 1) * inner]);
            }
        }
        out
    })
}

/// The adjoint of index_select: rows of `g` are added into the rows they were read from.
pub(crate) fn index_add(
    g: &CpuStorage,
    outer: usize,
    n: usize,
    inner: usize,
    idx: &[usize],
) -> CpuStorage {
    map_cpu!(g, |g| {
        let mut out = vec![Default::default(); outer * n * inner];
        for o in 0..outer {
            for (j, &i) in idx.iter().enumerate() {
                let src = &g[(o * idx.len() + j) * inner..(o * idx.len() + j + 1) * inner];
                for (d, &v) in out[(o * n + i) * inner..(o * n + i + 1) * inner]
                    .iter_mut()
                    .zip(src)
                {
                    *d += v;
                }
            }
        }
        out
    })
}

pub(crate) fn gather(
    s: &CpuStorage,
    outer: usize,
    n: usize,
    inner: usize,
    idx: &[usize],
    k: usize,
) -> CpuStorage {
    map_cpu!(s, |x| {
        let mut out = Vec::with_capacity(outer * k * inner);
        for o in 0..outer {
            for j in 0..k {
                for i in 0..inner {
                    out.push(x[(o * n + idx[(o * k + j) * inner + i]) * inner + i]);
                }
            }
        }
        out
    })
}

pub(crate) fn scatter_add(
    g: &CpuStorage,
    outer: usize,
    n: usize,
    inner: usize,
    idx: &[usize],
    k: usize,
) -> CpuStorage {
    map_cpu!(g, |g| {
        let mut out = vec![Default::default(); outer * n * inner];
        for o in 0..outer {
            for j in 0..k {
                for i in 0..inner {
                    let flat = (o * k + j) * inner + i;
                    out[(o * n + idx[flat]) * inner + i] += g[flat];
                }
            }
        }
        out
    })
}
