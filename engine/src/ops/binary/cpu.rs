use rayon::prelude::*;

use super::BinaryOp;
use crate::ops::map::map2;
use crate::ops::CPU_PAR_MIN as PAR_MIN;
use crate::{CpuStorage, Elem, Shape};

pub(crate) fn binary(
    a: &CpuStorage,
    sa: &Shape,
    b: &CpuStorage,
    sb: &Shape,
    out: &Shape,
    op: BinaryOp,
) -> CpuStorage {
    match (a, b) {
        (CpuStorage::F32(x), CpuStorage::F32(y)) => {
            CpuStorage::F32(broadcast_zip(x, sa, y, sb, out, op))
        }
        (CpuStorage::F64(x), CpuStorage::F64(y)) => {
            CpuStorage::F64(broadcast_zip(x, sa, y, sb, out, op))
        }
        _ => unreachable!("dtypes are checked before dispatch"),
    }
}

/// The op's function is picked here, outside every loop, so that each loop below is
/// compiled for one function and vectorises.
fn broadcast_zip<T: Elem>(
    a: &[T],
    sa: &Shape,
    b: &[T],
    sb: &Shape,
    out: &Shape,
    op: BinaryOp,
) -> Vec<T> {
    match op {
        BinaryOp::Add => zip_with(a, sa, b, sb, out, |x, y| x + y),
        BinaryOp::Sub => zip_with(a, sa, b, sb, out, |x, y| x - y),
        BinaryOp::Mul => zip_with(a, sa, b, sb, out, |x, y| x * y),
        BinaryOp::Div => zip_with(a, sa, b, sb, out, |x, y| x / y),
    }
}

fn zip_with<T: Elem>(
    a: &[T],
    sa: &Shape,
    b: &[T],
    sb: &Shape,
    out: &Shape,
    f: impl Fn(T, T) -> T + Sync,
) -> Vec<T> {
    let n = out.numel();
    if sa == out && sb == out {
        return map2(a, b, f);
    }
    // General case: walk the output row by row (last dimension), each row reading `a` and
    // `b` with their broadcast strides (0 along broadcast dimensions).
    let rank = out.rank();
    let row = if rank == 0 { 1 } else { out.dims()[rank - 1] };
    let stride_a = sa.broadcast_strides(out);
    let stride_b = sb.broadcast_strides(out);
    let (la, lb) = if rank == 0 {
        (0, 0)
    } else {
        (stride_a[rank - 1], stride_b[rank - 1])
    };
    let dims = out.dims();
    let fill_row = |r: usize, dst: &mut [T]| {
        let (mut oa, mut ob, mut rem) = (0, 0, r);
        for d in (0..rank.saturating_sub(1)).rev() {
            let i = rem % dims[d];
            rem /= dims[d];
            oa += i * stride_a[d];
            ob += i * stride_b[d];
        }
        // The common rows (a bias along the row, one value per row of a channel) get
        // loops without strides.
        match (la, lb) {
            (1, 1) => {
                let (a, b) = (&a[oa..][..dst.len()], &b[ob..][..dst.len()]);
                for ((o, &x), &y) in dst.iter_mut().zip(a).zip(b) {
                    *o = f(x, y);
                }
            }
            (1, 0) => {
                let y = b[ob];
                for (o, &x) in dst.iter_mut().zip(&a[oa..]) {
                    *o = f(x, y);
                }
            }
            (0, 1) => {
                let x = a[oa];
                for (o, &y) in dst.iter_mut().zip(&b[ob..]) {
                    *o = f(x, y);
                }
            }
            _ => {
                for (j, o) in dst.iter_mut().enumerate() {
                    *o = f(a[oa + j * la], b[ob + j * lb]);
                }
            }
        }
    };
    let mut result = vec![T::zero(); n];
    if row == 0 {
        return result;
    }
    if n >= PAR_MIN {
        result
            .par_chunks_mut(row)
            .enumerate()
            .for_each(|(r, dst)| fill_row(r, dst));
    } else {
        result
            .chunks_mut(row)
            .enumerate()
            .for_each(|(r, dst)| fill_row(r, dst));
    }
    result
}
