//! `to_dtype`: conversion between element types, recorded on the tape. The CPU converts
//! between F32 and F64; a GPU between F32 and F16 (storage for the f16 matmul, on adapters
//! with shader-f16).
//!
//! Backward: the gradient is cast back to the input's type, except for an F16 input, whose
//! gradient stays F32: no op but matmul reads f16, and gradients summed in f16 would lose
//! what small updates carry.
pub(crate) mod cpu;
pub(crate) mod gpu;
#[cfg(test)]
mod tests;

use crate::autograd::BackwardOp;
use crate::memory::meta::MetaStorage;
use crate::{DType, Result, Storage, Tensor};

impl Tensor {
    /// This tensor's values as `dtype` (the same tensor when it already is). Values beyond
    /// f16's range (|x| > 65504) have no defined F16 value.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let storage = match &*self.storage() {
            Storage::Cpu(s) => Storage::Cpu(cpu::cast(s, dtype)?),
            Storage::Gpu(s) => Storage::Gpu(gpu::cast(s, dtype)?),
            Storage::Meta(s) => {
                Storage::Meta(MetaStorage::alloc(s.device(), s.len(), dtype, "to_dtype"))
            }
        };
        Ok(Tensor::from_op(
            storage,
            self.shape().clone(),
            self.device().clone(),
            CastBackward { from: self.dtype() },
            vec![self.clone()],
        ))
    }
}

struct CastBackward {
    from: DType,
}

impl BackwardOp for CastBackward {
    fn name(&self) -> &'static str {
        "to_dtype"
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
        let to = if self.from == DType::F16 {
            DType::F32
        } else {
            self.from
        };
        Ok(vec![Some(g.to_dtype(to)?)])
    }
}

pub(crate) fn gradcheck_cases() -> Vec<crate::gradcheck::Case> {
    use crate::gradcheck::Case;
    // f64 -> f32 -> f64 times a second input, so a dropped or scaled gradient shows. The
    // cast input is ~1e-7 in size: f32 rounds x ± 1e-6 there to ~6e-14, which moves the
    // central difference by ~6e-8 relative, below the CPU tolerance; inputs ~1 would move it
    // by ~6e-2.
    let values = |input: usize, shape: &[usize], seed: u64| {
        let n: usize = shape.iter().product();
        let scale = if input == 0 { 1e-7 } else { 1.0 };
        (0..n)
            .map(|i| scale * (((seed as usize + 7 * i) % 13) as f64 - 6.0) / 6.0)
            .collect()
    };
    vec![Case::new("to_dtype", &[&[3, 4], &[3, 4]], |x| {
        let round_trip = x[0].to_dtype(DType::F32)?.to_dtype(x[0].dtype())?;
        round_trip.mul(&x[1])
    })
    .with_init(values)]
}
