use crate::gpu::{linear_grid, shaders, GpuStorage, Launch, Params};
use crate::Result;

/// The parameter block of softmax.wgsl.
fn params(lanes: usize, n: usize, inner: usize, log: bool) -> Params {
    Params::new().u32(lanes).u32(n).u32(inner).u32(log as usize)
}

/// One workgroup per lane.
fn launch_lanes(
    entry: &'static str,
    p: Params,
    lanes: usize,
    reads: &[&GpuStorage],
    out: &GpuStorage,
) -> Result<()> {
    let device = out.device();
    let reads: Vec<_> = reads.iter().map(|s| s.buffer()).collect();
    device.launch(Launch {
        shader: &shaders::SOFTMAX,
        entry,
        constants: &[],
        params: p,
        reads: &reads,
        writes: &[out.buffer()],
        workgroups: linear_grid(device, lanes, 1)?,
    })
}

pub(crate) fn softmax(
    x: &GpuStorage,
    outer: usize,
    n: usize,
    inner: usize,
    log: bool,
) -> Result<GpuStorage> {
    let y = GpuStorage::alloc(x.device(), x.len(), "softmax")?;
    let lanes = outer * inner;
    launch_lanes("forward", params(lanes, n, inner, log), lanes, &[x], &y)?;
    Ok(y)
}

pub(crate) fn softmax_backward(
    y: &GpuStorage,
    g: &GpuStorage,
    outer: usize,
    n: usize,
    inner: usize,
    log: bool,
) -> Result<GpuStorage> {
    let dx = GpuStorage::alloc(y.device(), y.len(), "softmax backward")?;
    let lanes = outer * inner;
    launch_lanes(
        "backward",
        params(lanes, n, inner, log),
        lanes,
        &[y, g],
        &dx,
    )?;
    Ok(dx)
}
