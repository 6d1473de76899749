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
    if out.is_empty() || mask.group == 0 {
        return out;
    }
    let scale = T::c(mask.scale);
    out.par_chunks_mut(mask.group)
        .zip(x.par_chunks(mask.group))
        .enumerate()
        .with_min_len((CPU_PAR_MIN / mask.group).max(1))
        .for_each(|(i, (out, x))| {
            if mask.keeps(i) {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = v * scale;
                }
            }
        });
    out
}
