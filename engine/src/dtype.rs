//! Element types. f32 is the working type on every device; f64 exists on the CPU so that
//! finite-difference gradient checks are exact to ~1e-10; f16 is storage that halves the bytes
//! a matmul reads (it still accumulates in f32): GPU tensors on adapters with shader-f16, and
//! on every device the activations `--precision f16` saves for the backward pass.
use crate::storage::CpuStorage;
use crate::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    /// Storage only: on GPUs `to_dtype` makes it, matmul reads it, every other op asks for
    /// a cast back to f32; on the CPU only the tape makes it (`--precision f16`'s saved
    /// activations), for the rules that read f16 (matmul, conv2d's input).
    F16,
}

impl DType {
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
            DType::F16 => 2,
        }
    }
}

/// The error for an F16 tensor where only F32 and F64 exist (the CPU, and every GPU op but
/// matmul and `to_dtype`).
pub(crate) fn f16_unsupported(op: &'static str, where_: &str) -> Error {
    Error::invalid(
        op,
        format!(
            "F16 tensors are not supported {where_}: F16 is GPU storage that only matmul and to_dtype read; cast with .to_dtype(DType::F32) first"
        ),
    )
}

/// A float element a CPU kernel can be written over once, for both f32 and f64.
pub trait Elem:
    num_traits::Float
    + num_traits::FromPrimitive
    + num_traits::NumAssign
    + std::iter::Sum
    + Send
    + Sync
    + Default
    + std::fmt::Debug
    + 'static
{
    const DTYPE: DType;
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
    fn into_storage(v: Vec<Self>) -> CpuStorage;
    fn erf(self) -> Self;
    /// e^self for self <= 0 (a softmax's shifted scores), NaN kept: f32 through a
    /// polynomial that vectorises (libm's expf is a call per element), f64 through libm.
    fn exp_nonpositive(self) -> Self;
    /// `half` widened into `out` (the same length), vectorised where the CPU converts f16.
    fn widen_f16(half: &[half::f16], out: &mut [Self]);
    fn c(x: f64) -> Self {
        <Self as num_traits::FromPrimitive>::from_f64(x).unwrap()
    }
    fn f64(self) -> f64 {
        num_traits::ToPrimitive::to_f64(&self).unwrap()
    }
    /// max that propagates NaN, as PyTorch's max, relu and clamp do (`Float::max` is IEEE
    /// maxNum, which returns the other operand and would hide a NaN).
    fn max_nan(self, other: Self) -> Self {
        if self.is_nan() || other.is_nan() {
            Self::nan()
        } else {
            self.max(other)
        }
    }
}

impl Elem for f32 {
    const DTYPE: DType = DType::F32;
    fn slice(s: &CpuStorage) -> Option<&[Self]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn into_storage(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F32(v)
    }
    fn erf(self) -> Self {
        libm::erff(self)
    }
    #[inline(always)]
    fn exp_nonpositive(self) -> Self {
        crate::ops::unary::cpu::fast::exp_nonpositive(self)
    }
    fn widen_f16(half: &[half::f16], out: &mut [Self]) {
        half::slice::HalfFloatSliceExt::convert_to_f32_slice(half, out)
    }
}

impl Elem for f64 {
    const DTYPE: DType = DType::F64;
    fn slice(s: &CpuStorage) -> Option<&[Self]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn into_storage(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F64(v)
    }
    fn erf(self) -> Self {
        libm::erf(self)
    }
    fn exp_nonpositive(self) -> Self {
        self.exp()
    }
    fn widen_f16(half: &[half::f16], out: &mut [Self]) {
        half::slice::HalfFloatSliceExt::convert_to_f64_slice(half, out)
    }
}
