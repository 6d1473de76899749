//! Where a tensor's numbers live: host memory (f32 or f64, or f16: the saved activations of
//! `--precision f16`) or a GPU buffer (f32, or f16 as storage for matmul).
use crate::dtype::f16_unsupported;
use crate::gpu::GpuStorage;
use crate::memory::meta::MetaStorage;
use crate::{DType, Elem, Result};
use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

#[derive(Clone, Debug)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// Saved activations of `--precision f16` as the tape hands them to a rule that reads
    /// f16 (`BackwardOp::reads_f16`: matmul, conv2d, attention, bias_gelu); no other CPU
    /// kernel takes it.
    F16(Vec<f16>),
}

impl CpuStorage {
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
            CpuStorage::F16(_) => DType::F16,
        }
    }
    pub fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
            CpuStorage::F16(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn zeros(dtype: DType, n: usize) -> Result<Self> {
        Ok(match dtype {
            DType::F32 => CpuStorage::F32(vec![0.0; n]),
            DType::F64 => CpuStorage::F64(vec![0.0; n]),
            DType::F16 => return Err(f16_unsupported("zeros", "on the CPU")),
        })
    }
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            CpuStorage::F32(v) => v.iter().map(|&x| x as f64).collect(),
            CpuStorage::F64(v) => v.clone(),
            CpuStorage::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
        }
    }
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match self {
            CpuStorage::F32(v) => v.clone(),
            CpuStorage::F64(v) => v.iter().map(|&x| x as f32).collect(),
            CpuStorage::F16(v) => widen(v),
        }
    }
    pub fn from_f64(dtype: DType, v: &[f64]) -> Result<Self> {
        Ok(match dtype {
            DType::F32 => CpuStorage::F32(v.iter().map(|&x| x as f32).collect()),
            DType::F64 => CpuStorage::F64(v.to_vec()),
            DType::F16 => return Err(f16_unsupported("from_f64", "on the CPU")),
        })
    }
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        Ok(match (self, dtype) {
            (CpuStorage::F32(_), DType::F32) | (CpuStorage::F64(_), DType::F64) => self.clone(),
            (s, DType::F32) => CpuStorage::F32(s.to_f32_vec()),
            (s, DType::F64) => CpuStorage::F64(s.to_f64_vec()),
            (_, DType::F16) => return Err(f16_unsupported("to_dtype", "on the CPU")),
        })
    }
    pub fn as_slice<T: Elem>(&self) -> &[T] {
        T::slice(self).expect("storage dtype checked by the op")
    }
}

/// f16 values as f32 (exact), converted in parallel chunks.
pub(crate) fn widen(half: &[f16]) -> Vec<f32> {
    let mut wide = vec![0f32; half.len()];
    widen_into(half, &mut wide);
    wide
}

/// `half` widened into `wide` (the same length), in parallel chunks.
pub(crate) fn widen_into(half: &[f16], wide: &mut [f32]) {
    wide.par_chunks_mut(1 << 14)
        .zip(half.par_chunks(1 << 14))
        .for_each(|(w, h)| h.convert_to_f32_slice(w));
}

/// f32 values rounded to the nearest f16, converted in parallel chunks.
pub(crate) fn narrow(wide: &[f32]) -> Vec<f16> {
    let mut half = vec![f16::ZERO; wide.len()];
    half.par_chunks_mut(1 << 14)
        .zip(wide.par_chunks(1 << 14))
        .for_each(|(h, w)| h.convert_from_f32_slice(w));
    half
}

/// Runs a generic CPU kernel on whichever float type a storage holds:
/// `map_cpu!(storage, |x| kernel(x))` where `x: &[T]` and the kernel returns `Vec<T>`.
#[macro_export]
macro_rules! map_cpu {
    ($s:expr, |$x:ident| $body:expr) => {
        match $s {
            $crate::CpuStorage::F32($x) => $crate::CpuStorage::F32($body),
            $crate::CpuStorage::F64($x) => $crate::CpuStorage::F64($body),
            $crate::CpuStorage::F16(_) => unreachable!("F16 reaches only the rules that read f16"),
        }
    };
}

#[derive(Clone, Debug)]
pub enum Storage {
    Cpu(CpuStorage),
    Gpu(GpuStorage),
    /// Shape-only storage of the meta device (`memory::meta`): counted, never computed.
    Meta(MetaStorage),
}

impl Storage {
    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
            Storage::Gpu(s) => s.dtype(),
            Storage::Meta(s) => s.dtype(),
        }
    }
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.len(),
            Storage::Gpu(s) => s.len(),
            Storage::Meta(s) => s.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The error for storages of different kinds meeting in one op. `check_same` rules this out
/// before dispatch; this keeps the dispatch total without a panic.
pub(crate) fn mixed_devices(op: &'static str) -> crate::Error {
    crate::Error::invalid(op, "operands live on different devices")
}
