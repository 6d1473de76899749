use super::cpu::Layout;
use crate::gpu::{linear_grid, shaders, GpuStorage, Launch, Params};
use crate::Result;

fn params(l: Layout, training: bool) -> Params {
    Params::new()
        .u32(l.n)
        .u32(l.c)
        .u32(l.s)
        .u32(training as usize)
        .f32(0.0)
        .f32(0.0)
        .f32(0.0)
}

/// [mean, biased variance] of every channel.
pub(crate) fn batch_stats(x: &GpuStorage, l: Layout) -> Result<[GpuStorage; 2]> {
    let device = x.device();
    let mean = GpuStorage::alloc(device, l.c, "batch_norm")?;
    let var = GpuStorage::alloc(device, l.c, "batch_norm")?;
    device.launch(Launch {
        shader: &shaders::BATCH_NORM,
        entry: "stats",
        constants: &[],
        params: params(l, true),
        reads: &[x.buffer()],
        writes: &[mean.buffer(), var.buffer()],
        // One workgroup per channel.
        workgroups: linear_grid(device, l.c, 1)?,
    })?;
    Ok([mean, var])
}

/// [rstd, new running mean, new running variance] from the batch's [mean, biased variance]
/// and the running statistics, in one launch (shaders/batch_norm.wgsl `running`).
pub(crate) fn running(
    [mean, var, running_mean, running_var]: [&GpuStorage; 4],
    l: Layout,
    momentum: f64,
    eps: f64,
) -> Result<[GpuStorage; 3]> {
    let device = mean.device();
    let out = [(); 3].map(|_| GpuStorage::alloc(device, l.c, "batch_norm"));
    let [rstd, rm, rv] = out;
    let (rstd, rm, rv) = (rstd?, rm?, rv?);
    let count = (l.n * l.s) as f64;
    device.launch(Launch {
        shader: &shaders::BATCH_NORM,
        entry: "running",
        constants: &[],
        params: Params::new()
            .u32(l.n)
            .u32(l.c)
            .u32(l.s)
            .u32(1)
            .f32(momentum)
            .f32(eps)
            .f32(count / (count - 1.0)),
        reads: &[
            mean.buffer(),
            var.buffer(),
            running_mean.buffer(),
            running_var.buffer(),
        ],
        writes: &[rstd.buffer(), rm.buffer(), rv.buffer()],
        workgroups: linear_grid(device, l.c, 256)?,
    })?;
    Ok([rstd, rm, rv])
}

/// y = (x - mean[c]) * rstd[c] * weight[c] + bias[c].
pub(crate) fn normalize(
    x: &GpuStorage,
    [mean, rstd, weight, bias]: [&GpuStorage; 4],
    l: Layout,
) -> Result<GpuStorage> {
    let device = x.device();
    let y = GpuStorage::alloc(device, x.len(), "batch_norm")?;
    device.launch(Launch {
        shader: &shaders::BATCH_NORM,
        entry: "normalize",
        constants: &[],
        params: params(l, false),
        reads: &[
            x.buffer(),
            mean.buffer(),
            rstd.buffer(),
            weight.buffer(),
            bias.buffer(),
        ],
        writes: &[y.buffer()],
        workgroups: linear_grid(device, x.len(), 256)?,
    })?;
    Ok(y)
}

/// [dx, dweight, dbias], as the CPU's backward.
pub(crate) fn backward(
    x: &GpuStorage,
    g: &GpuStorage,
    [mean, rstd, weight]: [&GpuStorage; 3],
    l: Layout,
    training: bool,
) -> Result<[GpuStorage; 3]> {
    let device = x.device();
    // [dweight; dbias], 2C values.
    let sums = GpuStorage::alloc(device, 2 * l.c, "batch_norm backward")?;
    device.launch(Launch {
        shader: &shaders::BATCH_NORM,
        entry: "grad_sums",
        constants: &[],
        params: params(l, training),
        reads: &[x.buffer(), g.buffer(), mean.buffer(), rstd.buffer()],
        writes: &[sums.buffer()],
        workgroups: linear_grid(device, l.c, 1)?,
    })?;
    let dx = GpuStorage::alloc(device, x.len(), "batch_norm backward")?;
    device.launch(Launch {
        shader: &shaders::BATCH_NORM,
        entry: "backward_input",
        constants: &[],
        params: params(l, training),
        reads: &[
            x.buffer(),
            g.buffer(),
            mean.buffer(),
            rstd.buffer(),
            weight.buffer(),
            sums.buffer(),
        ],
        writes: &[dx.buffer()],
        workgroups: linear_grid(device, x.len(), 256)?,
    })?;
    let dweight = sums.slice(0, l.c, "batch_norm backward")?;
    let dbias = sums.slice(l.c, l.c, "batch_norm backward")?;
    Ok([dx, dweight, dbias])
}
