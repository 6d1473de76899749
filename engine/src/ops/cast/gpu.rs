//! Casts on the GPU (shaders/cast.wgsl): f32 to f16 storage and back, one 32-bit word (two
//! halves) per invocation.
use crate::gpu::{linear_grid, shaders, GpuStorage, Launch, Params};
use crate::{DType, Error, Result};

pub(crate) fn cast(x: &GpuStorage, dtype: DType) -> Result<GpuStorage> {
    let device = x.device();
    let entry = match (x.dtype(), dtype) {
        (from, to) if from == to => return Ok(x.clone()),
        (DType::F32, DType::F16) => {
            // Every consumer of f16 storage (the f16 matmul) needs the feature, so without
            // it an F16 tensor would be a dead end.
            if !device.has_shader_f16() {
                return Err(Error::invalid(
                    "to_dtype",
                    format!(
                        "{device} has no shader-f16 feature, so it cannot hold F16 tensors; keep them F32"
                    ),
                ));
            }
            "f32_to_f16"
        }
        (DType::F16, DType::F32) => "f16_to_f32",
        (_, to) => {
            return Err(Error::invalid(
                "to_dtype",
                format!(
                    "{to:?} is not available on {device}: GPU tensors are F32 or F16; move the tensor to the CPU first"
                ),
            ))
        }
    };
    convert(x, dtype, entry, "to_dtype")
}

/// f32 values kept as f16 storage and nothing else (the tape's f16 copies of saved
/// activations, `autograd/half_saved.rs`): no kernel reads them but the cast back, so unlike
/// `cast` this needs no shader-f16 (the cast is core WGSL's pack2x16float).
pub(crate) fn f32_to_f16_storage(x: &GpuStorage, op: &'static str) -> Result<GpuStorage> {
    convert(x, DType::F16, "f32_to_f16", op)
}

fn convert(
    x: &GpuStorage,
    dtype: DType,
    entry: &'static str,
    op: &'static str,
) -> Result<GpuStorage> {
    let device = x.device();
    let out = GpuStorage::alloc_typed(device, x.len(), dtype, op)?;
    device.launch(Launch {
        shader: &shaders::CAST,
        entry,
        constants: &[],
        params: Params::new().u32(x.len()),
        reads: &[x.buffer()],
        writes: &[out.buffer()],
        workgroups: linear_grid(device, x.len().div_ceil(2), 256)?,
    })?;
    Ok(out)
}
