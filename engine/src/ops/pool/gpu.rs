use super::Pool2dDims;
use crate::gpu::{linear_grid, shaders, GpuStorage, Launch, Params};
use crate::Result;

fn params(d: &Pool2dDims) -> Params {
    Params::new()
        .u32(d.n * d.c)
        .u32(d.h)
        .u32(d.w)
        .u32(d.ho)
        .u32(d.wo)
        .u32(d.kernel)
        .u32(d.stride)
        .u32(d.padding)
}

fn out_len(d: &Pool2dDims) -> usize {
    d.n * d.c * d.ho * d.wo
}

fn in_len(d: &Pool2dDims) -> usize {
    d.n * d.c * d.h * d.w
}

/// The maxima and where they are (the u32 in-plane position of each, one word per output).
pub(crate) fn max_forward(x: &GpuStorage, d: &Pool2dDims) -> Result<(GpuStorage, GpuStorage)> {
    let device = x.device();
    let y = GpuStorage::alloc(device, out_len(d), "max_pool2d")?;
    let positions = GpuStorage::alloc(device, out_len(d), "max_pool2d")?;
    device.launch(Launch {
        shader: &shaders::POOL,
        entry: "max_forward",
        constants: &[],
        params: params(d),
        reads: &[x.buffer()],
        writes: &[y.buffer(), positions.buffer()],
        workgroups: linear_grid(device, out_len(d), 256)?,
    })?;
    Ok((y, positions))
}

pub(crate) fn avg_forward(x: &GpuStorage, d: &Pool2dDims) -> Result<GpuStorage> {
    let device = x.device();
    let y = GpuStorage::alloc(device, out_len(d), "avg_pool2d")?;
    device.launch(Launch {
        shader: &shaders::POOL,
        entry: "avg_forward",
        constants: &[],
        params: params(d),
        reads: &[x.buffer()],
        writes: &[y.buffer()],
        workgroups: linear_grid(device, out_len(d), 256)?,
    })?;
    Ok(y)
}

pub(crate) fn max_backward(
    positions: &GpuStorage,
    g: &GpuStorage,
    d: &Pool2dDims,
) -> Result<GpuStorage> {
    let device = g.device();
    let dx = GpuStorage::alloc(device, in_len(d), "max_pool2d")?;
    device.launch(Launch {
        shader: &shaders::POOL,
        entry: "max_backward",
        constants: &[],
        params: params(d),
        reads: &[positions.buffer(), g.buffer()],
        writes: &[dx.buffer()],
        workgroups: linear_grid(device, in_len(d), 256)?,
    })?;
    Ok(dx)
}

pub(crate) fn avg_backward(g: &GpuStorage, d: &Pool2dDims) -> Result<GpuStorage> {
    let device = g.device();
    let dx = GpuStorage::alloc(device, in_len(d), "avg_pool2d")?;
    device.launch(Launch {
        shader: &shaders::POOL,
        entry: "avg_backward",
        constants: &[],
        params: params(d),
        reads: &[g.buffer()],
        writes: &[dx.buffer()],
        workgroups: linear_grid(device, in_len(d), 256)?,
    })?;
    Ok(dx)
}
