use rayon::prelude::*;

use crate::ops::dropout::Mask;
use crate::ops::map::map2;
use crate::ops::unary::cpu::relu;
use crate::ops::CPU_PAR_MIN;
use crate::{CpuStorage, Elem};

/// x + (branch · gamma) · mask (each factor only where given).
pub(crate) fn forward(
    x: &CpuStorage,
    branch: &CpuStorage,
    gamma: Option<&CpuStorage>,
    mask: Option<&Mask>,
) -> CpuStorage {
    match (x, branch, gamma) {
        (CpuStorage::F32(x), CpuStorage::F32(b), g) => {
            CpuStorage::F32(forward_t(x, b, g.map(values), mask))
        }
        (CpuStorage::F64(x), CpuStorage::F64(b), g) => {
            CpuStorage::F64(forward_t(x, b, g.map(values), mask))
        }
        _ => unreachable!("dtypes are checked before dispatch"),
    }
}

/// With m = g · mask: (m · gamma, m · branch), the latter before its sum over rows.
pub(crate) fn backward(
    g: &CpuStorage,
    branch: &CpuStorage,
    gamma: &CpuStorage,
    mask: Option<&Mask>,
) -> (CpuStorage, CpuStorage) {
    match (g, branch, gamma) {
        (CpuStorage::F32(g), CpuStorage::F32(b), CpuStorage::F32(gm)) => {
            let (db, dg) = backward_t(g, b, gm, mask);
            (CpuStorage::F32(db), CpuStorage::F32(dg))
        }
        (CpuStorage::F64(g), CpuStorage::F64(b), CpuStorage::F64(gm)) => {
            let (db, dg) = backward_t(g, b, gm, mask);
            (CpuStorage::F64(db), CpuStorage::F64(dg))
        }
        _ => unreachable!("dtypes are checked before dispatch"),
    }
}

/// relu(x + y) as `add` then `relu` compute it.
pub(crate) fn add_relu(x: &CpuStorage, y: &CpuStorage) -> CpuStorage {
    match (x, y) {
        (CpuStorage::F32(x), CpuStorage::F32(y)) => CpuStorage::F32(map2(x, y, |x, y| relu(x + y))),
        (CpuStorage::F64(x), CpuStorage::F64(y)) => CpuStorage::F64(map2(x, y, |x, y| relu(x + y))),
        _ => unreachable!("dtypes are checked before dispatch"),
    }
}

/// A gamma's values, whose dtype is checked before dispatch to be the other inputs'.
fn values<T: Elem>(s: &CpuStorage) -> &[T] {
    T::slice(s).expect("dtypes are checked before dispatch")
}

/// Runs of r = gcd(sample, d) elements lie within one sample (one mask factor) and one row
/// of gamma; rayon tasks take `per_task` elements, whole runs.
struct Plan<'a> {
    r: usize,
    per_task: usize,
    sample: usize,
    d: usize,
    mask: Option<&'a Mask>,
}

impl<'a> Plan<'a> {
    fn new(n: usize, d: usize, mask: Option<&'a Mask>) -> Plan<'a> {
        let sample = mask.map_or(n, |m| m.group).max(1);
        let r = gcd(sample, d).max(1);
        let per_task = r * 4096usize.div_ceil(r);
        Plan {
            r,
            per_task,
            sample,
            d,
            mask,
        }
    }

    /// The mask factor (None without a mask) and gamma offset of the run at `start`.
    fn run<T: Elem>(&self, start: usize) -> (Option<T>, usize) {
        let factor = self.mask.map(|m| {
            if m.keeps(start / self.sample) {
                T::c(m.scale)
            } else {
                T::zero()
            }
        });
        (factor, start % self.d)
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn forward_t<T: Elem>(x: &[T], b: &[T], gamma: Option<&[T]>, mask: Option<&Mask>) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    // Without gamma, runs need only stay within a sample; 4096 keeps them long.
    let plan = Plan::new(x.len(), gamma.map_or(4096, |g| g.len()), mask);
    let task = |(t, out): (usize, &mut [T])| {
        for (k, o) in out.chunks_mut(plan.r).enumerate() {
            let start = t * plan.per_task + k * plan.r;
            let (factor, j) = plan.run::<T>(start);
            let (x, b) = (&x[start..][..o.len()], &b[start..][..o.len()]);
            match (gamma, factor) {
                (Some(g), Some(f)) => {
                    for (((o, &x), &b), &g) in o.iter_mut().zip(x).zip(b).zip(&g[j..]) {
                        *o = x + b * g * f;
                    }
                }
                (Some(g), None) => {
                    for (((o, &x), &b), &g) in o.iter_mut().zip(x).zip(b).zip(&g[j..]) {
                        *o = x + b * g;
                    }
                }
                (None, Some(f)) => {
                    for ((o, &x), &b) in o.iter_mut().zip(x).zip(b) {
                        *o = x + b * f;
                    }
                }
                (None, None) => {
                    for ((o, &x), &b) in o.iter_mut().zip(x).zip(b) {
                        *o = x + b;
                    }
                }
            }
        }
    };
    if x.len() >= CPU_PAR_MIN {
        out.par_chunks_mut(plan.per_task).enumerate().for_each(task);
    } else {
        out.chunks_mut(plan.per_task).enumerate().for_each(task);
    }
    out
}

fn backward_t<T: Elem>(g: &[T], b: &[T], gamma: &[T], mask: Option<&Mask>) -> (Vec<T>, Vec<T>) {
    let mut db = vec![T::zero(); g.len()];
    let mut dg = vec![T::zero(); g.len()];
    let plan = Plan::new(g.len(), gamma.len(), mask);
    let task = |(t, (db, dg)): (usize, (&mut [T], &mut [T]))| {
        for (k, (db, dg)) in db.chunks_mut(plan.r).zip(dg.chunks_mut(plan.r)).enumerate() {
            let start = t * plan.per_task + k * plan.r;
            let (factor, j) = plan.run::<T>(start);
            let (g, b) = (&g[start..][..db.len()], &b[start..][..db.len()]);
            let rows = db
                .iter_mut()
                .zip(dg.iter_mut())
                .zip(g)
                .zip(b)
                .zip(&gamma[j..]);
            match factor {
                Some(f) => {
                    for ((((db, dg), &g), &b), &gm) in rows {
                        let m = g * f;
                        *db = m * gm;
                        *dg = m * b;
                    }
                }
                None => {
                    for ((((db, dg), &g), &b), &gm) in rows {
                        *db = g * gm;
                        *dg = g * b;
                    }
                }
            }
        }
    };
    let per_task = plan.per_task;
    if g.len() >= CPU_PAR_MIN {
        db.par_chunks_mut(per_task)
            .zip(dg.par_chunks_mut(per_task))
            .enumerate()
            .for_each(task);
    } else {
        db.chunks_mut(per_task)
            .zip(dg.chunks_mut(per_task))
            .enumerate()
            .for_each(task);
    }
    (db, dg)
}
