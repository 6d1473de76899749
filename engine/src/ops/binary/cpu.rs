use rayon::prelude::*;

use super::BinaryOp;
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

#[inline]
fn eval<T: Elem>(x: T, y: T, op: BinaryOp) -> T {
    match op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        BinaryOp::Div => x / y,
    }
}

fn broadcast_zip<T: Elem>(
    a: &[T],
    sa: &Shape,
    b: &[T],
    sb: &Shape,
    out: &Shape,
    op: BinaryOp,
) -> Vec<T> {
    let n = out.numel();
    if sa == out && sb == out {
        if n >= PAR_MIN {
            return a.par_iter().zip(b).map(|(&x, &y)| eval(x, y, op)).collect();
        }
        return a.iter().zip(b).map(|(&x, &y)| eval(x, y, op)).collect();
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
        for (j, o) in dst.iter_mut().enumerate() {
            *o = eval(a[oa + j * la], b[ob + j * lb], op);
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
