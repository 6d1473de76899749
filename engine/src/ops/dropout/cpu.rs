use rayon::prelude::*;

use super::Mask;
use crate::ops::CPU_PAR_MIN;
use crate::{map_cpu, CpuStorage, Elem};

/// x * scale where the mask keeps an element's group, else 0.
pub(crate) fn masked(s: &CpuStorage, mask: &Mask) -> CpuStorage {
    map_cpu!(s, |x| masked_t(x, mask))
}

fn masked_t<T: Elem>(x: &[T], mask: &Mask) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    let group = mask.group;
    if out.is_empty() || group == 0 {
        return out;
    }
    let scale = T::c(mask.scale);
    // Rayon tasks take whole groups, at least ~4096 elements' worth.
    let groups_per_task = 4096usize.div_ceil(group);
    let task = groups_per_task * group;
    out.par_chunks_mut(task)
        .zip(x.par_chunks(task))
        .enumerate()
        .with_min_len((CPU_PAR_MIN / task).max(1))
        .for_each(|(t, (out, x))| {
            let factor = |k: usize| {
                if mask.keeps(t * groups_per_task + k) {
                    scale
                } else {
                    T::zero()
                }
            };
            if group == 1 {
                // Dropout: one decision per element, kept as a plain loop for speed.
                for (k, (o, &v)) in out.iter_mut().zip(x).enumerate() {
                    *o = v * factor(k);
                }
            } else {
                for (k, (out, x)) in out.chunks_mut(group).zip(x.chunks(group)).enumerate() {
                    let f = factor(k);
                    for (o, &v) in out.iter_mut().zip(x) {
                        *o = v * f;
                    }
                }
            }
        });
    out
}
