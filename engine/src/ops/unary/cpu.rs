use rayon::prelude::*;

use super::UnaryOp;
use crate::{map_cpu, CpuStorage, Elem};

pub(crate) use crate::ops::CPU_PAR_MIN as PAR_MIN;

pub(crate) fn unary(s: &CpuStorage, op: UnaryOp) -> CpuStorage {
    map_cpu!(s, |x| apply(x, op))
}

fn apply<T: Elem>(x: &[T], op: UnaryOp) -> Vec<T> {
    let f = move |v: T| -> T { eval(v, op) };
    if x.len() >= PAR_MIN {
        x.par_iter().map(|&v| f(v)).collect()
    } else {
        x.iter().map(|&v| f(v)).collect()
    }
}

/// g · op(t) element by element (same shapes and dtypes).
pub(crate) fn times(g: &CpuStorage, t: &CpuStorage, op: UnaryOp) -> CpuStorage {
    fn zip<T: Elem>(g: &[T], t: &[T], op: UnaryOp) -> Vec<T> {
        let f = move |(&gv, &tv): (&T, &T)| gv * eval(tv, op);
        if g.len() >= PAR_MIN {
            g.par_iter().zip(t).map(f).collect()
        } else {
            g.iter().zip(t).map(f).collect()
        }
    }
    match (g, t) {
        (CpuStorage::F32(g), CpuStorage::F32(t)) => CpuStorage::F32(zip(g, t, op)),
        (CpuStorage::F64(g), CpuStorage::F64(t)) => CpuStorage::F64(zip(g, t, op)),
        _ => unreachable!("dtypes are checked before dispatch"),
    }
}

#[inline]
fn eval<T: Elem>(v: T, op: UnaryOp) -> T {
    let half = T::c(0.5);
    let one = T::one();
    match op {
        UnaryOp::Exp => v.exp(),
        UnaryOp::Log => v.ln(),
        UnaryOp::Sqrt => v.sqrt(),
        UnaryOp::Neg => -v,
        UnaryOp::Relu => v.max(T::zero()),
        UnaryOp::Gelu => v * half * (one + (v * T::c(std::f64::consts::FRAC_1_SQRT_2)).erf()),
        UnaryOp::Tanh => v.tanh(),
        UnaryOp::Sigmoid => one / (one + (-v).exp()),
        UnaryOp::Powf(p) => v.powf(T::c(p)),
        UnaryOp::AddScalar(c) => v + T::c(c),
        UnaryOp::MulScalar(c) => v * T::c(c),
        UnaryOp::Step => {
            if v > T::zero() {
                one
            } else {
                T::zero()
            }
        }
        UnaryOp::GeluGrad => {
            let cdf = half * (one + (v * T::c(std::f64::consts::FRAC_1_SQRT_2)).erf());
            let pdf = (-(v * v) * half).exp()
                * T::c(0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2);
            cdf + v * pdf
        }
    }
}
