use super::{Pool2dDims, PoolKind};
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

fn op_code(kind: PoolKind) -> f64 {
    match kind {
        PoolKind::Max => 0.0,
        PoolKind::Avg => 1.0,
    }
}

pub(crate) fn forward(x: &GpuStorage, kind: PoolKind, d: &Pool2dDims) -> Result<GpuStorage> {
    let device = x.device();
    let n = d.n * d.c * d.ho * d.wo;
    let y = GpuStorage::alloc(device, n, kind.name())?;
    device.launch(Launch {
        shader: &shaders::POOL,
        entry: "forward",
        constants: &[("OP", op_code(kind))],
        params: params(d),
        reads: &[x.buffer()],
        writes: &[y.buffer()],
        workgroups: linear_grid(device, n, 256)?,
    })?;
    Ok(y)
}

pub(crate) fn backward(
    x: &GpuStorage,
    g: &GpuStorage,
    kind: PoolKind,
    d: &Pool2dDims,
) -> Result<GpuStorage> {
    let device = x.device();
    let dx = GpuStorage::alloc(device, x.len(), kind.name())?;
    device.launch(Launch {
        shader: &shaders::POOL,
        entry: "backward",
        constants: &[("OP", op_code(kind))],
        params: params(d),
        reads: &[x.buffer(), g.buffer()],
        writes: &[dx.buffer()],
        workgroups: linear_grid(device, x.len(), 256)?,
    })?;
    Ok(dx)
}
