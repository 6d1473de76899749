use super::ReduceOp;
use crate::gpu::{check_rank, collapse, linear_grid, shaders, GpuStorage, Launch, Params};
use crate::{Result, Shape};

const WG: u32 = 256;

fn op_code(op: ReduceOp) -> f64 {
    match op {
        ReduceOp::Sum => 0.0,
        ReduceOp::Max => 1.0,
    }
}

pub(crate) fn reduce_axis(
    x: &GpuStorage,
    outer: usize,
    n: usize,
    inner: usize,
    op: ReduceOp,
) -> Result<GpuStorage> {
    let device = x.device();
    let out = GpuStorage::alloc(device, outer * inner, "reduce")?;
    // Rows that are contiguous get a whole workgroup each; columns get one invocation each.
    let (entry, workgroups) = if inner == 1 {
        ("reduce_rows", linear_grid(device, outer, 1)?)
    } else {
        ("reduce_axis", linear_grid(device, outer * inner, WG)?)
    };
    device.launch(Launch {
        shader: &shaders::REDUCE,
        entry,
        constants: &[("OP", op_code(op))],
        params: Params::new().u32(outer).u32(n).u32(inner),
        reads: &[x.buffer()],
        writes: &[out.buffer()],
        workgroups,
    })?;
    Ok(out)
}

pub(crate) fn max_backward(
    x: &GpuStorage,
    max: &GpuStorage,
    g: &GpuStorage,
    outer: usize,
    n: usize,
    inner: usize,
) -> Result<GpuStorage> {
    let device = x.device();
    let dx = GpuStorage::alloc(device, x.len(), "max backward")?;
    device.launch(Launch {
        shader: &shaders::REDUCE,
        entry: "max_backward",
        constants: &[],
        params: Params::new().u32(outer).u32(n).u32(inner),
        reads: &[x.buffer(), max.buffer(), g.buffer()],
        writes: &[dx.buffer()],
        workgroups: linear_grid(device, outer * inner, WG)?,
    })?;
    Ok(dx)
}

/// Sums `from`-shaped values down to `to`, where `to` broadcasts to `from`.
pub(crate) fn sum_to(x: &GpuStorage, from: &Shape, to: &Shape) -> Result<GpuStorage> {
    // Dimensions `to` broadcasts along have output stride 0; collapsing with the output
    // strides as a second operand never merges a reduced dimension with a kept one.
    let (dims, strides) = collapse(from.dims(), &[from.strides(), to.broadcast_strides(from)]);
    check_rank("sum_to", &dims)?;
    let reduced = |keep: bool| -> Vec<usize> {
        dims.iter()
            .zip(&strides[1])
            .map(|(&d, &s)| if (s == 0) != keep { d } else { 1 })
            .collect()
    };
    let (out_dims, reduced_dims) = (reduced(true), reduced(false));
    strided(
        x,
        "sum_to",
        to.numel(),
        Params::new()
            .u32(to.numel())
            .u32(dims.len())
            .u32(reduced_dims.iter().product())
            .array(&out_dims)
            .array(&reduced_dims)
            .array(&strides[0]),
    )
}

pub(crate) fn broadcast_to(x: &GpuStorage, from: &Shape, to: &Shape) -> Result<GpuStorage> {
    let (dims, strides) = collapse(to.dims(), &[from.broadcast_strides(to)]);
    check_rank("broadcast_to", &dims)?;
    strided(
        x,
        "broadcast_to",
        to.numel(),
        Params::new()
            .u32(to.numel())
            .u32(dims.len())
            .u32(1)
            .array(&dims)
            .array(&vec![1; dims.len()])
            .array(&strides[0]),
    )
}

fn strided(x: &GpuStorage, entry: &'static str, n: usize, params: Params) -> Result<GpuStorage> {
    let device = x.device();
    let out = GpuStorage::alloc(device, n, entry)?;
    device.launch(Launch {
        shader: &shaders::REDUCE,
        entry,
        constants: &[],
        params,
        reads: &[x.buffer()],
        writes: &[out.buffer()],
        workgroups: linear_grid(device, n, WG)?,
    })?;
    Ok(out)
}
