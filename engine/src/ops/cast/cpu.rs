//! Casts on the CPU: between f32 and f64 (the CPU has no f16).
use crate::{CpuStorage, DType, Result};

pub(crate) fn cast(x: &CpuStorage, dtype: DType) -> Result<CpuStorage> {
    x.to_dtype(dtype)
}
