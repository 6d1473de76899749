use crate::ops::for_each_index;
use crate::{map_cpu, CpuStorage, Elem, Shape};

pub(crate) fn permute(s: &CpuStorage, shape: &Shape, dims: &[usize]) -> CpuStorage {
    let in_strides = shape.strides();
    let out_shape = Shape::from(dims.iter().map(|&d| shape.dims()[d]).collect::<Vec<_>>());
    let strides: Vec<usize> = dims.iter().map(|&d| in_strides[d]).collect();
    map_cpu!(s, |x| {
        let mut out = Vec::with_capacity(x.len());
        for_each_index(&out_shape, |_, idx| {
            out.push(x[idx.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>()]);
        });
        out
    })
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
