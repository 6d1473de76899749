use crate::gpu::{linear_grid, shaders, GpuStorage, Launch, Params};
use crate::Result;

/// The parameter block of softmax.wgsl.
fn params(lanes: usize, n: usize, inner: usize, log: bool) -> Params {
    Params::new()
        .u32(lanes)
        .u32(n)
        .u32(inner)
        .u32(log as usize)
        .f32(1.0)
        .u32(1)
        .u32(0)
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

/// Attention's probabilities: softmax(scale · S + bias[head]) over each row of the scores
/// S [B·H·N, N] (`bias` [H, N, N]).
pub(crate) fn attention_scores(
    s: &GpuStorage,
    bias: Option<&GpuStorage>,
    heads: usize,
    n: usize,
    scale: f64,
) -> Result<GpuStorage> {
    let probs = GpuStorage::alloc(s.device(), s.len(), "attention")?;
    let rows = s.len() / n.max(1);
    let p = Params::new()
        .u32(rows)
        .u32(n)
        .u32(1)
        .u32(0)
        .f32(scale)
        .u32(heads)
        .u32(bias.is_some() as usize);
    // Without a bias the scores stand in for it (bound, never read).
    launch_lanes("scores", p, rows, &[s, bias.unwrap_or(s)], &probs)?;
    Ok(probs)
}
