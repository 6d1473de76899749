use crate::gpu::{linear_grid, shaders, GpuStorage, Launch, Params};
use crate::{DType, Result};

pub(crate) fn forward(x: &GpuStorage, bias: &GpuStorage) -> Result<GpuStorage> {
    let device = x.device();
    let out = GpuStorage::alloc(device, x.len(), "bias_gelu")?;
    device.launch(Launch {
        shader: &shaders::BIAS_GELU,
        entry: "forward",
        constants: &[],
        params: Params::new().u32(x.len()).u32(bias.len()),
        reads: &[x.buffer(), bias.buffer()],
        writes: &[out.buffer()],
        workgroups: linear_grid(device, x.len(), 256)?,
    })?;
    Ok(out)
}

pub(crate) fn backward(x: &GpuStorage, bias: &GpuStorage, g: &GpuStorage) -> Result<GpuStorage> {
    let device = x.device();
    let dz = GpuStorage::alloc(device, x.len(), "bias_gelu_grad")?;
    device.launch(Launch {
        shader: &shaders::BIAS_GELU,
        // F16: the saved x of `--precision f16`, read as it is.
        entry: match x.dtype() {
            DType::F16 => "backward_f16",
            _ => "backward",
        },
        constants: &[],
        params: Params::new().u32(x.len()).u32(bias.len()),
        reads: &[x.buffer(), bias.buffer(), g.buffer()],
        writes: &[dz.buffer()],
        workgroups: linear_grid(device, x.len(), 256)?,
    })?;
    Ok(dz)
}
