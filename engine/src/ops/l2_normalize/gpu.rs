use crate::gpu::{linear_grid, shaders, GpuStorage, Launch, Params};
use crate::Result;

fn launch(
    entry: &'static str,
    reads: &[&GpuStorage],
    out: &GpuStorage,
    (outer, n, inner): (usize, usize, usize),
    eps: f64,
) -> Result<()> {
    let device = out.device();
    let lanes = outer * inner;
    let reads: Vec<_> = reads.iter().map(|s| s.buffer()).collect();
    device.launch(Launch {
        shader: &shaders::L2_NORMALIZE,
        entry,
        constants: &[],
        params: Params::new().u32(lanes).u32(n).u32(inner).f32(eps),
        reads: &reads,
        writes: &[out.buffer()],
        workgroups: linear_grid(device, lanes, 1)?,
    })
}

pub(crate) fn forward(
    x: &GpuStorage,
    lanes: (usize, usize, usize),
    eps: f64,
) -> Result<GpuStorage> {
    let y = GpuStorage::alloc(x.device(), x.len(), "l2_normalize")?;
    launch("forward", &[x], &y, lanes, eps)?;
    Ok(y)
}

pub(crate) fn backward(
    x: &GpuStorage,
    y: &GpuStorage,
    g: &GpuStorage,
    lanes: (usize, usize, usize),
    eps: f64,
) -> Result<GpuStorage> {
    let dx = GpuStorage::alloc(x.device(), x.len(), "l2_normalize backward")?;
    launch("backward", &[x, y, g], &dx, lanes, eps)?;
    Ok(dx)
}
