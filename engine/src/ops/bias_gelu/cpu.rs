use rayon::prelude::*;

use crate::ops::saved_input::Input;
use crate::ops::unary::cpu::{eval, fast};
use crate::ops::unary::UnaryOp;
use crate::ops::CPU_PAR_MIN;
use crate::{CpuStorage, Elem};

/// gelu(x + bias): f32 through the vectorisable GELU that `gelu` uses, f64 through libm.
pub(crate) fn forward(x: &CpuStorage, bias: &CpuStorage) -> CpuStorage {
    match (x, bias) {
        (CpuStorage::F32(x), CpuStorage::F32(b)) => {
            CpuStorage::F32(rows(Input::Full(x), b, x, |x, b, _| fast::gelu(x + b)))
        }
        (CpuStorage::F64(x), CpuStorage::F64(b)) => {
            CpuStorage::F64(rows(Input::Full(x), b, x, |x, b, _| {
                eval(x + b, UnaryOp::Gelu)
            }))
        }
        _ => unreachable!("dtypes are checked before dispatch"),
    }
}

/// g · gelu'(x + bias), in the order of `gelu`'s backward (g times the derivative). x may be
/// the f16 copy `--precision f16` saved.
pub(crate) fn backward(x: &CpuStorage, bias: &CpuStorage, g: &CpuStorage) -> CpuStorage {
    match (bias, g) {
        (CpuStorage::F32(b), CpuStorage::F32(g)) => match Input::of(x) {
            Some(x) => CpuStorage::F32(rows(x, b, g, |x, b, g| g * fast::gelu_grad(x + b))),
            None => unreachable!("dtypes are checked before dispatch"),
        },
        (CpuStorage::F64(b), CpuStorage::F64(g)) => match Input::of(x) {
            Some(x) => CpuStorage::F64(rows(x, b, g, |x, b, g| g * eval(x + b, UnaryOp::GeluGrad))),
            None => unreachable!("dtypes are checked before dispatch"),
        },
        _ => unreachable!("dtypes are checked before dispatch"),
    }
}

/// out[i] = f(x[i], bias[i mod d], g[i]) row by row (the bias is one row), so that the inner
/// loop has no index arithmetic and vectorises; rayon over blocks of whole rows when large.
fn rows<T: Elem>(x: Input<'_, T>, bias: &[T], g: &[T], f: impl Fn(T, T, T) -> T + Sync) -> Vec<T> {
    let d = bias.len();
    let mut out = vec![T::zero(); x.len()];
    if out.is_empty() {
        return out;
    }
    let block = d * 4096usize.div_ceil(d);
    let run = |(k, out): (usize, &mut [T])| {
        let start = k * block;
        let mut scratch = Vec::new();
        for (r, o) in out.chunks_mut(d).enumerate() {
            let at = start + r * d;
            let (x, g) = (x.get(at..at + d, &mut scratch), &g[at..at + d]);
            for (((o, &x), &b), &g) in o.iter_mut().zip(x).zip(bias).zip(g) {
                *o = f(x, b, g);
            }
        }
    };
    if x.len() >= CPU_PAR_MIN {
        out.par_chunks_mut(block).enumerate().for_each(run);
    } else {
        out.chunks_mut(block).enumerate().for_each(run);
    }
    out
}
