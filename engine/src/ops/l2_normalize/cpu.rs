use crate::ops::map_lanes;
use crate::{map_cpu, CpuStorage, Elem};

fn norm<T: Elem>(x: &[T]) -> T {
    x.iter().map(|&v| v * v).sum::<T>().sqrt()
}

pub(crate) fn forward(s: &CpuStorage, n: usize, inner: usize, eps: f64) -> CpuStorage {
    map_cpu!(s, |x| forward_lanes(x, n, inner, eps))
}

fn forward_lanes<T: Elem>(x: &[T], n: usize, inner: usize, eps: f64) -> Vec<T> {
    map_lanes([x], n, inner, |[x], y| {
        let inv = T::one() / norm(x).max_nan(T::c(eps));
        for (y, &x) in y.iter_mut().zip(x) {
            *y = x * inv;
        }
    })
}

pub(crate) fn backward(
    x: &CpuStorage,
    y: &CpuStorage,
    g: &CpuStorage,
    n: usize,
    inner: usize,
    eps: f64,
) -> CpuStorage {
    map_cpu!(x, |x| backward_lanes(
        x,
        y.as_slice(),
        g.as_slice(),
        n,
        inner,
        eps
    ))
}

/// Above eps, y = x / ||x|| has Jacobian (I - y yᵀ) / ||x||, so dx = (g - y (y·g)) / ||x||;
/// below it the denominator is the constant eps and dx = g / eps.
fn backward_lanes<T: Elem>(x: &[T], y: &[T], g: &[T], n: usize, inner: usize, eps: f64) -> Vec<T> {
    let eps = T::c(eps);
    map_lanes([x, y, g], n, inner, |[x, y, g], dx| {
        let norm = norm(x);
        if norm > eps {
            let dot: T = y.iter().zip(g).map(|(&y, &g)| y * g).sum();
            for ((d, &y), &g) in dx.iter_mut().zip(y).zip(g) {
                *d = (g - y * dot) / norm;
            }
        } else {
            for (d, &g) in dx.iter_mut().zip(g) {
                *d = g / eps;
            }
        }
    })
}
