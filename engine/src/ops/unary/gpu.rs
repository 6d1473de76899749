use super::UnaryOp;
use crate::gpu::{linear_grid, shaders, GpuDevice, GpuStorage, Launch, Params};
use crate::Result;

/// The `OP` override of shaders/unary.wgsl, and the op's scalar.
fn code(op: UnaryOp) -> (u32, f64) {
    match op {
        UnaryOp::Exp => (0, 0.0),
        UnaryOp::Log => (1, 0.0),
        UnaryOp::Sqrt => (2, 0.0),
        UnaryOp::Neg => (3, 0.0),
        UnaryOp::Relu => (4, 0.0),
        UnaryOp::Gelu => (5, 0.0),
        UnaryOp::Tanh => (6, 0.0),
        UnaryOp::Sigmoid => (7, 0.0),
        UnaryOp::Powf(p) => (8, p),
        UnaryOp::AddScalar(c) => (9, c),
        UnaryOp::MulScalar(c) => (10, c),
        UnaryOp::Step => (11, 0.0),
        UnaryOp::GeluGrad => (12, 0.0),
    }
}

pub(crate) fn unary(x: &GpuStorage, op: UnaryOp) -> Result<GpuStorage> {
    let device = x.device();
    let out = GpuStorage::alloc(device, x.len(), op.name())?;
    let (op_code, c) = code(op);
    device.launch(Launch {
        shader: &shaders::UNARY,
        entry: "main",
        constants: &[("OP", op_code as f64)],
        params: Params::new().u32(x.len()).f32(c),
        reads: &[x.buffer()],
        writes: &[out.buffer()],
        workgroups: linear_grid(device, x.len(), 256)?,
    })?;
    Ok(out)
}

/// `len` copies of `value`, written by a kernel: nothing crosses from the host.
pub(crate) fn fill(
    device: &GpuDevice,
    len: usize,
    value: f64,
    what: &'static str,
) -> Result<GpuStorage> {
    let out = GpuStorage::alloc(device, len, what)?;
    device.launch(Launch {
        shader: &shaders::UNARY,
        entry: "fill",
        constants: &[],
        params: Params::new().u32(len).f32(value),
        reads: &[],
        writes: &[out.buffer()],
        workgroups: linear_grid(device, len, 256)?,
    })?;
    Ok(out)
}

/// g · op(t) element by element, one dispatch (same lengths).
pub(crate) fn times(g: &GpuStorage, t: &GpuStorage, op: UnaryOp) -> Result<GpuStorage> {
    let device = t.device();
    let out = GpuStorage::alloc(device, t.len(), op.name())?;
    let (op_code, c) = code(op);
    device.launch(Launch {
        shader: &shaders::UNARY,
        entry: "times",
        constants: &[("OP", op_code as f64)],
        params: Params::new().u32(t.len()).f32(c),
        reads: &[t.buffer(), g.buffer()],
        writes: &[out.buffer()],
        workgroups: linear_grid(device, t.len(), 256)?,
    })?;
    Ok(out)
}
