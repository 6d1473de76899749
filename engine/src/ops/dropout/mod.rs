//! Dropout (each element zeroed with probability p) and drop path / stochastic depth (each
//! sample, i.e. index of the first dimension, zeroed whole with probability p); survivors are
//! scaled by 1 / (1 - p) so the expected value is unchanged. The mask is a pure function of
//! (seed, index): nothing is stored, the backward pass recomputes it, and the GPU backend
//! draws exactly the same mask from the same seed.
mod cpu;
mod gpu;
#[cfg(test)]
mod tests;

use crate::autograd::BackwardOp;
use crate::{ensure_shape, Error, Result, Storage, Tensor};

/// The mask's random bits for element (dropout) or sample (drop path) `index`, under the
/// call's `key` (from [`seed_key`]): a counter-based generator, so every bit is computable
/// alone, in any order, on any device. `shaders/dropout.wgsl` must mirror this function (and
/// `pcg_hash`) bit for bit, which is why it uses only wrapping u32 arithmetic, xor and
/// shifts (WGSL has no u64). Indices wrap at 2^32.
#[inline]
pub(crate) fn random_bits(key: u32, index: u32) -> u32 {
    pcg_hash(pcg_hash(index ^ key).wrapping_add(key))
}

/// Folds a 64-bit seed into the 32-bit key of [`random_bits`] (computed once per call, on the
/// host, so the GPU receives the key rather than the seed).
pub(crate) fn seed_key(seed: u64) -> u32 {
    let (lo, hi) = (seed as u32, (seed >> 32) as u32);
    pcg_hash(lo ^ pcg_hash(hi))
}

/// PCG-RXS-M-XS as a hash (Jarzynski and Olano, "Hash Functions for GPU Rendering", JCGT 2020).
#[inline]
fn pcg_hash(x: u32) -> u32 {
    let state = x.wrapping_mul(747796405).wrapping_add(2891336453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
    (word >> 22) ^ word
}

/// Where the mask of one dropout call comes from and what survivors are multiplied by.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mask {
    /// `seed_key(seed)`.
    pub key: u32,
    /// An index is dropped when its random bits are below this: probability threshold / 2^32.
    pub threshold: u32,
    /// 1 / (1 - p).
    pub scale: f64,
    /// Consecutive elements sharing one decision: 1 for dropout, a sample's size for drop path.
    pub group: usize,
    /// Which groups of the larger batch this tensor's groups are: a slice of it (a
    /// micro-batch, a data-parallel rank's share) draws the decisions the whole batch would
    /// have drawn for its samples.
    pub place: SamplePlace,
}

/// Where a tensor's samples sit in a larger batch: samples `0..split` are the batch's
/// `first..first + split`, the rest are the batch's `second..`. One range (`split` =
/// `usize::MAX`) for a micro-batch; two for a data-parallel rank, whose share of B images
/// is their first views (rows `first..` of the batch) followed by their second views (rows
/// `second = B + first..`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SamplePlace {
    pub first: usize,
    pub split: usize,
    pub second: usize,
}

impl SamplePlace {
    /// The whole batch, or a contiguous slice of it starting at sample `first`.
    pub const fn from(first: usize) -> SamplePlace {
        SamplePlace {
            first,
            split: usize::MAX,
            second: 0,
        }
    }

    /// Sample `index` of the tensor as a sample of the batch.
    pub fn in_batch(&self, index: usize) -> usize {
        if index < self.split {
            self.first + index
        } else {
            self.second + (index - self.split)
        }
    }

    /// The place of the tensor's samples `start..`.
    pub fn from_sample(self, start: usize) -> SamplePlace {
        if start < self.split {
            SamplePlace {
                first: self.first + start,
                split: self.split - start,
                second: self.second,
            }
        } else {
            SamplePlace::from(self.in_batch(start))
        }
    }
}

impl Mask {
    pub(crate) fn new(
        op: &'static str,
        p: f64,
        seed: u64,
        group: usize,
        place: SamplePlace,
    ) -> Result<Mask> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid(op, format!("p = {p} is outside [0, 1)")));
        }
        Ok(Mask {
            key: seed_key(seed),
            threshold: (p * 4294967296.0) as u32,
            scale: 1.0 / (1.0 - p),
            group,
            place,
        })
    }

    /// Whether group `index` of this tensor is kept.
    pub(crate) fn keeps(&self, index: usize) -> bool {
        random_bits(self.key, self.place.in_batch(index) as u32) >= self.threshold
    }
}

impl Tensor {
    /// Zeroes each element with probability `p` and scales the rest by 1 / (1 - p); the
    /// same `seed` gives the same mask. p = 0 returns the input itself.
    pub fn dropout(&self, p: f64, seed: u64) -> Result<Tensor> {
        let mask = Mask::new("dropout", p, seed, 1, SamplePlace::from(0))?;
        apply(self, p, mask)
    }

    /// Zeroes whole samples (entries of the first dimension) with probability `p` and scales
    /// the rest by 1 / (1 - p): stochastic depth on a residual branch (timm's drop_path).
    pub fn drop_path(&self, p: f64, seed: u64) -> Result<Tensor> {
        self.drop_path_from(p, seed, 0)
    }

    /// Drop path on samples `first_sample..` of a larger batch: sample i gets the decision
    /// that sample `first_sample + i` of `drop_path` on the whole batch gets, so a batch run
    /// in slices (`--micro-batch`) draws the same masks as in one piece.
    pub fn drop_path_from(&self, p: f64, seed: u64, first_sample: usize) -> Result<Tensor> {
        self.drop_path_at(p, seed, SamplePlace::from(first_sample))
    }

    /// Drop path on samples of a larger batch placed as `place` says (a data-parallel rank's
    /// views): each sample gets the decision of its place in the batch.
    pub fn drop_path_at(&self, p: f64, seed: u64, place: SamplePlace) -> Result<Tensor> {
        ensure_shape!(
            self.rank() >= 1,
            "drop_path",
            "needs a batch dimension, got a scalar"
        );
        let group = self.dims()[1..].iter().product();
        let mask = Mask::new("drop_path", p, seed, group, place)?;
        apply(self, p, mask)
    }
}

fn apply(x: &Tensor, p: f64, mask: Mask) -> Result<Tensor> {
    if p == 0.0 {
        return Ok(x.clone());
    }
    Ok(Tensor::from_op(
        masked(x, &mask)?,
        x.shape().clone(),
        x.device().clone(),
        DropoutBackward(mask),
        vec![x.clone()],
    ))
}

/// x * mask * scale, unrecorded.
pub(crate) fn masked(x: &Tensor, mask: &Mask) -> Result<Storage> {
    Ok(match &*x.storage() {
        Storage::Cpu(s) => Storage::Cpu(cpu::masked(s, mask)),
        Storage::Gpu(s) => Storage::Gpu(gpu::masked(s, mask)?),
        Storage::Meta(s) => Storage::Meta(s.like("dropout")),
    })
}

/// Dropout is linear in x with a fixed mask, so its backward is the same masking of the
/// output gradient, the mask recomputed from the seed.
struct DropoutBackward(Mask);

impl BackwardOp for DropoutBackward {
    fn name(&self) -> &'static str {
        if self.0.group == 1 {
            "dropout"
        } else {
            "drop_path"
        }
    }
    fn saves_input(&self, _index: usize) -> bool {
        false
    }
    fn saves_output(&self) -> bool {
        false
    }
    fn backward(
        &self,
        _inputs: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let dx = Tensor::from_storage(masked(g, &self.0)?, g.shape().clone(), g.device().clone());
        Ok(vec![Some(dx)])
    }
}

pub(crate) fn gradcheck_cases() -> Vec<crate::gradcheck::Case> {
    use crate::gradcheck::Case;
    vec![
        Case::new("dropout", &[&[1]], |x| x[0].dropout(0.3, 1)),
        Case::new("dropout", &[&[3, 7]], |x| x[0].dropout(0.5, 42)),
        Case::new("drop_path", &[&[5, 3]], |x| x[0].drop_path(0.4, 7)),
        Case::new("drop_path", &[&[7, 2, 3]], |x| x[0].drop_path(0.5, 3)),
        Case::new("drop_path", &[&[5, 4]], |x| {
            x[0].drop_path_from(0.5, 3, 1000)
        }),
        Case::new("drop_path", &[&[6, 2]], |x| {
            x[0].drop_path_at(
                0.5,
                3,
                SamplePlace {
                    first: 2,
                    split: 3,
                    second: 11,
                },
            )
        }),
    ]
}
