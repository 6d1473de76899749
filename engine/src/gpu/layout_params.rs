//! Shapes and strides as kernel parameters. Kernels that index through strides (broadcasts,
//! permutes, sum_to) take at most [`MAX_RANK`] dimensions; merging the dimensions that every
//! operand walks contiguously first means most shapes need two or three.
use super::MAX_RANK;
use crate::{Error, Result};

/// Merges neighbouring dimensions that every operand steps through contiguously and drops
/// size-1 dimensions. `strides[k]` are operand k's element strides over `dims`; the result
/// describes the same index map with as few dimensions as possible (at least one).
pub(crate) fn collapse(dims: &[usize], strides: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut out_dims: Vec<usize> = Vec::new();
    let mut out_strides: Vec<Vec<usize>> = vec![Vec::new(); strides.len()];
    for (d, &size) in dims.iter().enumerate() {
        if size == 1 {
            continue;
        }
        let mergeable = !out_dims.is_empty()
            && strides
                .iter()
                .zip(&out_strides)
                .all(|(s, o)| *o.last().unwrap() == s[d] * size);
        if mergeable {
            *out_dims.last_mut().unwrap() *= size;
            for (s, o) in strides.iter().zip(&mut out_strides) {
                *o.last_mut().unwrap() = s[d];
            }
        } else {
            out_dims.push(size);
            for (s, o) in strides.iter().zip(&mut out_strides) {
                o.push(s[d]);
            }
        }
    }
    if out_dims.is_empty() {
        out_dims.push(1);
        out_strides.iter_mut().for_each(|o| o.push(0));
    }
    (out_dims, out_strides)
}

/// Err when a collapsed shape still has more dimensions than kernels take.
pub(crate) fn check_rank(op: &'static str, dims: &[usize]) -> Result<()> {
    if dims.len() > MAX_RANK {
        return Err(Error::invalid(
            op,
            format!(
                "on the GPU this op takes at most {MAX_RANK} non-mergeable dimensions, got {dims:?}"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::collapse;

    #[test]
    fn contiguous_dimensions_merge() {
        // A [2,3,4] tensor plus a broadcast [4] one: the first two dims merge.
        let (d, s) = collapse(&[2, 3, 4], &[vec![12, 4, 1], vec![0, 0, 1]]);
        assert_eq!(d, vec![6, 4]);
        assert_eq!(s, vec![vec![4, 1], vec![0, 1]]);
        let (d, s) = collapse(&[2, 1, 5], &[vec![5, 5, 1]]);
        assert_eq!((d, s), (vec![10], vec![vec![1]]));
        let (d, s) = collapse(&[1, 1], &[vec![1, 1]]);
        assert_eq!((d, s), (vec![1], vec![vec![0]]));
        // A transpose cannot merge.
        let (d, _) = collapse(&[3, 2], &[vec![1, 3]]);
        assert_eq!(d, vec![3, 2]);
    }
}
