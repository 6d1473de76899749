//! GPU conv2d: im2col / col2im (shaders/conv2d.wgsl) around the tiled matmul, the same
//! lowering as the CPU's. Batches whose unfolded columns would not fit one storage binding
//! (or would take too much memory) are processed in chunks of samples.
use super::{Conv2dDims, Wanted};
use crate::gpu::{linear_grid, shaders, GpuStorage, Launch, Params};
use crate::ops::binary::{gpu as binary, BinaryOp};
use crate::ops::matmul::{gpu as matmul, MatmulDims};
use crate::ops::unary::gpu as unary;
use crate::ops::{layout, reduce};
use crate::{DType, Result, Shape};

/// Upper bound on one chunk's largest intermediate.
pub(super) const CHUNK_BYTES: u64 = 256 << 20;

/// Samples per chunk: as many as keep the unfolded columns and the output chunk within
/// both the binding limit and [`CHUNK_BYTES`].
fn chunk_samples(x: &GpuStorage, d: &Conv2dDims) -> usize {
    let limit = x
        .device()
        .limits()
        .max_storage_buffer_binding_size
        .min(CHUNK_BYTES);
    let per_sample = 4 * (d.patch_len().max(d.o) * d.out_pixels()) as u64;
    ((limit / per_sample.max(1)) as usize).clamp(1, d.n.max(1))
}

/// Columns of samples n0 .. n0 + nc: [nc, K, P], or [K, nc, P] when `k_major`.
fn im2col(
    x: &GpuStorage,
    d: &Conv2dDims,
    n0: usize,
    nc: usize,
    k_major: bool,
) -> Result<GpuStorage> {
    let device = x.device();
    let len = nc * d.patch_len() * d.out_pixels();
    let cols = GpuStorage::alloc(device, len, "conv2d im2col")?;
    device.launch(Launch {
        shader: &shaders::CONV2D,
        // F16: the saved input of `--precision f16`, which the backward pass reads as it is.
        entry: match x.dtype() {
            DType::F16 => "im2col_f16",
            _ => "im2col",
        },
        constants: &[],
        params: params(d, n0, nc, k_major),
        reads: &[x.buffer()],
        writes: &[cols.buffer()],
        workgroups: linear_grid(device, len, 256)?,
    })?;
    Ok(cols)
}

fn params(d: &Conv2dDims, n0: usize, nc: usize, k_major: bool) -> Params {
    Params::new()
        .u32(d.c)
        .u32(d.h)
        .u32(d.w)
        .u32(d.kh)
        .u32(d.kw)
        .u32(d.stride)
        .u32(d.padding)
        .u32(d.ho)
        .u32(d.wo)
        .u32(n0)
        .u32(nc)
        .u32(k_major as usize)
}

/// W [O, K] times each sample's [K, P] (or the transposed weight's product, `trans_w`).
fn weight_product(
    w: &GpuStorage,
    rhs: &GpuStorage,
    d: &Conv2dDims,
    nc: usize,
    trans_w: bool,
) -> Result<GpuStorage> {
    let (m, k) = if trans_w {
        (d.patch_len(), d.o)
    } else {
        (d.o, d.patch_len())
    };
    let dims = MatmulDims {
        batch: nc,
        m,
        k,
        n: d.out_pixels(),
        trans_a: trans_w,
        trans_b: false,
        a_batched: false,
        b_batched: true,
    };
    matmul::matmul(w, rhs, &dims)
}

pub(crate) fn forward(
    x: &GpuStorage,
    w: &GpuStorage,
    b: Option<&GpuStorage>,
    d: &Conv2dDims,
) -> Result<GpuStorage> {
    forward_in_chunks(x, w, b, d, chunk_samples(x, d))
}

/// The forward pass, `chunk` samples at a time.
pub(crate) fn forward_in_chunks(
    x: &GpuStorage,
    w: &GpuStorage,
    b: Option<&GpuStorage>,
    d: &Conv2dDims,
    chunk: usize,
) -> Result<GpuStorage> {
    let y_len = d.n * d.o * d.out_pixels();
    let mut y = if chunk >= d.n && d.is_pointwise() {
        // A 1x1 kernel's columns are the samples themselves.
        weight_product(w, x, d, d.n, false)?
    } else if chunk >= d.n {
        weight_product(w, &im2col(x, d, 0, d.n, false)?, d, d.n, false)?
    } else {
        let y = GpuStorage::alloc(x.device(), y_len, "conv2d")?;
        for n0 in (0..d.n).step_by(chunk) {
            let nc = chunk.min(d.n - n0);
            let part = weight_product(w, &im2col(x, d, n0, nc, false)?, d, nc, false)?;
            let per = d.o * d.out_pixels();
            part.copy_into(&y, 0, n0 * per, nc * per, "conv2d")?;
        }
        y
    };
    if let Some(b) = b {
        let out = Shape::from([d.n, d.o, d.out_pixels()]);
        y = binary::binary(&y, &out, b, &Shape::from([d.o, 1]), &out, BinaryOp::Add)?;
    }
    Ok(y)
}

pub(crate) struct Grads {
    pub input: Option<GpuStorage>,
    pub weight: Option<GpuStorage>,
    pub bias: Option<GpuStorage>,
}

pub(crate) fn backward(
    x: &GpuStorage,
    w: &GpuStorage,
    g: &GpuStorage,
    d: &Conv2dDims,
    wanted: Wanted,
) -> Result<Grads> {
    backward_in_chunks(x, w, g, d, wanted, chunk_samples(x, d))
}

/// The backward pass, `chunk` samples at a time (weight and bias gradients summed over the
/// chunks).
pub(crate) fn backward_in_chunks(
    x: &GpuStorage,
    w: &GpuStorage,
    g: &GpuStorage,
    d: &Conv2dDims,
    wanted: Wanted,
    chunk: usize,
) -> Result<Grads> {
    let device = x.device();
    let per_out = d.o * d.out_pixels();
    let mut grads = Grads {
        input: None,
        weight: None,
        bias: None,
    };
    let dx = if wanted.input {
        Some(GpuStorage::alloc(device, x.len(), "conv2d backward")?)
    } else {
        None
    };
    // Running sums over the chunks.
    let add =
        |acc: Option<GpuStorage>, part: GpuStorage, shape: &Shape| -> Result<Option<GpuStorage>> {
            Ok(Some(match acc {
                None => part,
                Some(acc) => binary::binary(&acc, shape, &part, shape, shape, BinaryOp::Add)?,
            }))
        };
    let (w_shape, b_shape) = (Shape::from([d.o, d.patch_len()]), Shape::from([d.o, 1]));
    for n0 in (0..d.n).step_by(chunk) {
        let nc = chunk.min(d.n - n0);
        let gc = if nc == d.n {
            g.clone()
        } else {
            g.slice(n0 * per_out, nc * per_out, "conv2d backward")?
        };
        if let Some(dx) = &dx {
            // d cols = Wᵀ · dy, folded back onto the input.
            let dcols = weight_product(w, &gc, d, nc, true)?;
            device.launch(Launch {
                shader: &shaders::CONV2D,
                entry: "col2im",
                constants: &[],
                params: params(d, n0, nc, false),
                reads: &[dcols.buffer()],
                writes: &[dx.buffer()],
                workgroups: linear_grid(device, nc * d.c * d.h * d.w, 256)?,
            })?;
        }
        if wanted.weight {
            // dW = dy [O, nc·P] · colsᵀ, both laid out with the chunk's samples side by side.
            let cols = im2col(x, d, n0, nc, true)?;
            let dy =
                layout::gpu::permute(&gc, &Shape::from([nc, d.o, d.out_pixels()]), &[1, 0, 2])?;
            let dims = MatmulDims {
                batch: 1,
                m: d.o,
                k: nc * d.out_pixels(),
                n: d.patch_len(),
                trans_a: false,
                trans_b: true,
                a_batched: false,
                b_batched: false,
            };
            grads.weight = add(
                grads.weight.take(),
                matmul::matmul(&dy, &cols, &dims)?,
                &w_shape,
            )?;
        }
        if wanted.bias {
            let from = Shape::from([nc, d.o, d.out_pixels()]);
            let part = reduce::gpu::sum_to(&gc, &from, &b_shape)?;
            grads.bias = add(grads.bias.take(), part, &b_shape)?;
        }
    }
    grads.input = dx;
    // An empty batch has no chunks: its weight and bias gradients are zeros.
    let zeros = |len| unary::fill(device, len, 0.0, "conv2d backward");
    if wanted.weight && grads.weight.is_none() {
        grads.weight = Some(zeros(w.len())?);
    }
    if wanted.bias && grads.bias.is_none() {
        grads.bias = Some(zeros(d.o)?);
    }
    Ok(grads)
}
