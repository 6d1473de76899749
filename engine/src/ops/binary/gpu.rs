use super::BinaryOp;
use crate::gpu::{check_rank, collapse, linear_grid, shaders, GpuStorage, Launch, Params};
use crate::{Result, Shape};

pub(crate) fn binary(
    a: &GpuStorage,
    sa: &Shape,
    b: &GpuStorage,
    sb: &Shape,
    out_shape: &Shape,
    op: BinaryOp,
) -> Result<GpuStorage> {
    let device = a.device();
    let n = out_shape.numel();
    let out = GpuStorage::alloc(device, n, op.name())?;
    let op_code = match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
    };
    let (entry, params) = if sa == out_shape && sb == out_shape {
        // The same parameter block (its size is the WGSL struct's), with no shape in it.
        let params = Params::new().u32(n).u32(0).array(&[]).array(&[]).array(&[]);
        ("same_shape", params)
    } else {
        let (dims, strides) = collapse(
            out_shape.dims(),
            &[
                sa.broadcast_strides(out_shape),
                sb.broadcast_strides(out_shape),
            ],
        );
        check_rank(op.name(), &dims)?;
        let params = Params::new()
            .u32(n)
            .u32(dims.len())
            .array(&dims)
            .array(&strides[0])
            .array(&strides[1]);
        ("broadcast", params)
    };
    device.launch(Launch {
        shader: &shaders::BINARY,
        entry,
        constants: &[("OP", op_code as f64)],
        params,
        reads: &[a.buffer(), b.buffer()],
        writes: &[out.buffer()],
        workgroups: linear_grid(device, n, 256)?,
    })?;
    Ok(out)
}
