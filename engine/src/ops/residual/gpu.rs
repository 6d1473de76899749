use crate::gpu::{linear_grid, shaders, GpuStorage, Launch, Params};
use crate::ops::dropout::Mask;
use crate::Result;

/// The parameter block of shaders/residual.wgsl; without a mask every sample is kept
/// (threshold 0) and multiplied by 1.
fn params(n: usize, d: usize, mask: Option<&Mask>) -> Params {
    let p = Params::new().u32(n).u32(d);
    match mask {
        Some(m) => p
            .u32(m.key as usize)
            .u32(m.threshold as usize)
            .u32(m.group.max(1))
            .f32(m.scale)
            .u32(m.place.first)
            .u32(m.place.split.min(u32::MAX as usize))
            .u32(m.place.second),
        None => p
            .u32(0)
            .u32(0)
            .u32(1)
            .f32(1.0)
            .u32(0)
            .u32(u32::MAX as usize)
            .u32(0),
    }
}

pub(crate) fn forward(
    x: &GpuStorage,
    branch: &GpuStorage,
    gamma: Option<&GpuStorage>,
    mask: Option<&Mask>,
) -> Result<GpuStorage> {
    let device = x.device();
    let n = x.len();
    let out = GpuStorage::alloc(device, n, "add_residual")?;
    device.launch(Launch {
        shader: &shaders::RESIDUAL,
        entry: "forward",
        constants: &[],
        params: params(n, gamma.map_or(0, |g| g.len()), mask),
        reads: &[
            x.buffer(),
            branch.buffer(),
            gamma.unwrap_or(branch).buffer(),
        ],
        writes: &[out.buffer()],
        workgroups: linear_grid(device, n, 256)?,
    })?;
    Ok(out)
}

/// (d branch, d gamma before its sum over rows).
pub(crate) fn backward(
    g: &GpuStorage,
    branch: &GpuStorage,
    gamma: &GpuStorage,
    mask: Option<&Mask>,
) -> Result<(GpuStorage, GpuStorage)> {
    let device = g.device();
    let n = g.len();
    let d_branch = GpuStorage::alloc(device, n, "add_residual_grad")?;
    let d_gamma_rows = GpuStorage::alloc(device, n, "add_residual_grad")?;
    device.launch(Launch {
        shader: &shaders::RESIDUAL,
        entry: "backward",
        constants: &[],
        params: params(n, gamma.len(), mask),
        reads: &[g.buffer(), branch.buffer(), gamma.buffer()],
        writes: &[d_branch.buffer(), d_gamma_rows.buffer()],
        workgroups: linear_grid(device, n, 256)?,
    })?;
    Ok((d_branch, d_gamma_rows))
}

pub(crate) fn add_relu(x: &GpuStorage, y: &GpuStorage) -> Result<GpuStorage> {
    let device = x.device();
    let n = x.len();
    let out = GpuStorage::alloc(device, n, "add_relu")?;
    device.launch(Launch {
        shader: &shaders::RESIDUAL,
        entry: "add_relu",
        constants: &[],
        params: params(n, 0, None),
        reads: &[x.buffer(), y.buffer()],
        writes: &[out.buffer()],
        workgroups: linear_grid(device, n, 256)?,
    })?;
    Ok(out)
}
