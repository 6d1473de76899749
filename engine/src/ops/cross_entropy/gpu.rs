use crate::gpu::{linear_grid, shaders, GpuBuffer, GpuStorage, Launch, Params};
use crate::ops::reduce::{gpu as reduce, ReduceOp};
use crate::ops::unary::{gpu as unary, UnaryOp};
use crate::Result;

fn params(m: usize, c: usize, smoothing: f64) -> Params {
    Params::new()
        .u32(m)
        .u32(c)
        .f32(1.0 - smoothing)
        .f32(smoothing / c as f64)
}

/// (the mean loss, one element; softmax probabilities [M, C]; the labels as uploaded, for
/// the backward).
pub(crate) fn forward(
    logits: &GpuStorage,
    labels: &[usize],
    smoothing: f64,
) -> Result<(GpuStorage, GpuStorage, GpuBuffer)> {
    let device = logits.device();
    let (m, c) = (labels.len(), logits.len() / labels.len());
    let probs = GpuStorage::alloc(device, logits.len(), "cross_entropy")?;
    let row_loss = GpuStorage::alloc(device, m, "cross_entropy")?;
    let labels = GpuBuffer::upload_indices(device, labels, "cross_entropy labels")?;
    device.launch(Launch {
        shader: &shaders::CROSS_ENTROPY,
        entry: "forward",
        constants: &[],
        params: params(m, c, smoothing),
        reads: &[logits.buffer(), &labels],
        writes: &[probs.buffer(), row_loss.buffer()],
        workgroups: linear_grid(device, m, 1)?,
    })?;
    let total = reduce::reduce_axis(&row_loss, 1, m, 1, ReduceOp::Sum)?;
    let loss = unary::unary(&total, UnaryOp::MulScalar(1.0 / m as f64))?;
    Ok((loss, probs, labels))
}

/// `labels` is the buffer the forward uploaded, holding `m` labels.
pub(crate) fn backward(
    probs: &GpuStorage,
    g: &GpuStorage,
    labels: &GpuBuffer,
    m: usize,
    smoothing: f64,
) -> Result<GpuStorage> {
    let device = probs.device();
    let c = probs.len() / m;
    let dx = GpuStorage::alloc(device, probs.len(), "cross_entropy backward")?;
    device.launch(Launch {
        shader: &shaders::CROSS_ENTROPY,
        entry: "backward",
        constants: &[],
        params: params(m, c, smoothing),
        reads: &[probs.buffer(), g.buffer(), labels],
        writes: &[dx.buffer()],
        workgroups: linear_grid(device, probs.len(), 256)?,
    })?;
    Ok(dx)
}
