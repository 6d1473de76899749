use crate::gpu::{linear_grid, shaders, GpuStorage, Launch, Params};
use crate::Result;

fn params(rows: usize, d: usize, eps: f64, weight: bool, bias: bool) -> Params {
    Params::new()
        .u32(rows)
        .u32(d)
        .f32(eps)
        .u32(weight as usize)
        .u32(bias as usize)
}

/// [y, mean, rstd], as the CPU's forward.
pub(crate) fn forward(
    x: &GpuStorage,
    weight: Option<&GpuStorage>,
    bias: Option<&GpuStorage>,
    d: usize,
    eps: f64,
) -> Result<[GpuStorage; 3]> {
    let device = x.device();
    let rows = x.len().checked_div(d).unwrap_or(0);
    let y = GpuStorage::alloc(device, x.len(), "layer_norm")?;
    let mean = GpuStorage::alloc(device, rows, "layer_norm")?;
    let rstd = GpuStorage::alloc(device, rows, "layer_norm")?;
    device.launch(Launch {
        shader: &shaders::LAYER_NORM,
        entry: "forward",
        constants: &[],
        params: params(rows, d, eps, weight.is_some(), bias.is_some()),
        // An absent weight or bias is stood in for by x (bound, never read).
        reads: &[
            x.buffer(),
            weight.unwrap_or(x).buffer(),
            bias.unwrap_or(x).buffer(),
        ],
        writes: &[y.buffer(), mean.buffer(), rstd.buffer()],
        workgroups: linear_grid(device, rows, 1)?,
    })?;
    Ok([y, mean, rstd])
}

/// [dx, dweight, dbias].
pub(crate) fn backward(
    x: &GpuStorage,
    weight: Option<&GpuStorage>,
    g: &GpuStorage,
    mean: &GpuStorage,
    rstd: &GpuStorage,
    d: usize,
) -> Result<[GpuStorage; 3]> {
    let device = x.device();
    let rows = x.len().checked_div(d).unwrap_or(0);
    let p = || params(rows, d, 0.0, weight.is_some(), false);
    let dx = GpuStorage::alloc(device, x.len(), "layer_norm backward")?;
    device.launch(Launch {
        shader: &shaders::LAYER_NORM,
        entry: "backward_input",
        constants: &[],
        params: p(),
        reads: &[
            x.buffer(),
            weight.unwrap_or(x).buffer(),
            g.buffer(),
            mean.buffer(),
            rstd.buffer(),
        ],
        writes: &[dx.buffer()],
        workgroups: linear_grid(device, rows, 1)?,
    })?;
    let dweight = GpuStorage::alloc(device, d, "layer_norm backward")?;
    let dbias = GpuStorage::alloc(device, d, "layer_norm backward")?;
    device.launch(Launch {
        shader: &shaders::LAYER_NORM,
        entry: "backward_params",
        constants: &[],
        params: p(),
        reads: &[x.buffer(), g.buffer(), mean.buffer(), rstd.buffer()],
        writes: &[dweight.buffer(), dbias.buffer()],
        workgroups: linear_grid(device, d, 256)?,
    })?;
    Ok([dx, dweight, dbias])
}
