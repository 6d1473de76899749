//! Fused attention on the GPU (shaders/attention.wgsl), flash-attention style.
//!
//! Why fused: the composed path (Q Kᵀ, softmax, · V) writes the scores and the probabilities
//! P [B, H, N, N] to memory and keeps P for the backward: at BEiT-base's 197 tokens, 12
//! heads and batch 128 that is 238 MB per layer, three times the size of the output. Here the
//! forward streams K and V through workgroup memory and normalises with an *online softmax*
//! (a running maximum and sum per query row, rescaling what was accumulated whenever the
//! maximum grows), so scores exist only a tile at a time.
//!
//! What is saved: O (the op's output, which the backward gets anyway) and each score row's
//! logsumexp L = log Σ_j exp(S_ij), [B, H, N].
//!
//! How the backward recomputes: P_ij = exp(S_ij − L_i) from Q, K and L, tile by tile. With
//! δ_i = rowsum(dO ⊙ O)_i (= Σ_j P_ij dP_ij, computed by the caller) the softmax gradient is
//! dS = P ⊙ (dO Vᵀ − δ). One kernel owns query rows and accumulates dQ = scale · dS K and
//! the bias gradient Σ_batch dS; another owns key rows and accumulates dV = Pᵀ dO and
//! dK = scale · dSᵀ Q. Each output element has a single writer, so no atomics are needed.
use super::cpu::Dims;
use crate::gpu::{linear_grid, shaders, GpuDevice, GpuStorage, Launch, Params};
use crate::ops::reduce::{gpu::reduce_axis, ReduceOp};
use crate::{DType, Error, Result};

/// The largest head dimension the kernels take: each invocation holds at most 4 columns of a
/// row's accumulators, and a row is split over at most 32 invocations.
pub(crate) const MAX_HEAD_DIM: usize = 128;

/// How many batch entries one workgroup sums the bias gradient over: fewer means more
/// workgroups in flight, more means fewer partial sums to add up afterwards.
const BIAS_BATCH_GROUP: usize = 8;

/// The launches of one attention call, sharing the tile shape (the shader's override
/// constants) and the grid of row blocks.
struct Kernel<'a> {
    device: &'a GpuDevice,
    dims: Dims,
    /// Rows a workgroup owns, and rows it streams through workgroup memory per step.
    rows: usize,
    tile: usize,
}

impl<'a> Kernel<'a> {
    /// Tiles chosen so that every kernel's workgroup memory, at most
    /// 2·(ROWS + TILE)·(D + 1) + 2·ROWS·TILE + 2·(ROWS + TILE) f32, stays under 14 KiB for
    /// any head dimension up to [`MAX_HEAD_DIM`] (WebGPU guarantees 16 KiB).
    fn new(device: &'a GpuDevice, dims: Dims) -> Result<Kernel<'a>> {
        let (rows, tile) = match dims.d {
            1..=64 => (16, 8),
            65..=MAX_HEAD_DIM => (8, 4),
            d => {
                return Err(Error::invalid(
                    "attention",
                    format!("on the GPU the head dimension must be 1 to {MAX_HEAD_DIM}, got {d}"),
                ))
            }
        };
        Ok(Kernel {
            device,
            dims,
            rows,
            tile,
        })
    }

    /// Workgroups per (batch, head) matrix: one per ROWS rows.
    fn row_blocks(&self) -> usize {
        self.dims.n.div_ceil(self.rows)
    }

    /// The parameter block of attention.wgsl.
    fn params(&self, scale: f64, has_bias: bool, group_size: usize, write_dbias: bool) -> Params {
        Params::new()
            .u32(self.dims.b)
            .u32(self.dims.h)
            .u32(self.dims.n)
            .u32(self.row_blocks())
            .f32(scale)
            .u32(has_bias as usize)
            .u32(group_size)
            .u32(write_dbias as usize)
    }

    /// `matrices` (batch, head) pairs, or groups of them, each split into row blocks.
    fn launch(
        &self,
        entry: &'static str,
        params: Params,
        matrices: usize,
        reads: &[&GpuStorage],
        writes: &[&GpuStorage],
    ) -> Result<()> {
        let reads: Vec<_> = reads.iter().map(|s| s.buffer()).collect();
        let writes: Vec<_> = writes.iter().map(|s| s.buffer()).collect();
        let constants = [
            ("ROWS", self.rows as f64),
            ("TILE", self.tile as f64),
            ("D", self.dims.d as f64),
        ];
        // F16 q, k, v: the saved copies of `--precision f16` (mod.rs hands over all three or
        // none), read by the f16 module's backward entry points.
        let f16 = reads[0].dtype() == DType::F16;
        self.device.launch(Launch {
            shader: shaders::attention(f16),
            entry,
            constants: &constants,
            params,
            reads: &reads,
            writes: &writes,
            workgroups: linear_grid(self.device, matrices * self.row_blocks(), 1)?,
        })
    }
}

/// (O [b, h, n, d], L [b, h, n]).
pub(crate) fn forward(
    q: &GpuStorage,
    k: &GpuStorage,
    v: &GpuStorage,
    bias: Option<&GpuStorage>,
    dims: Dims,
    scale: f64,
) -> Result<(GpuStorage, GpuStorage)> {
    let Dims { b, h, n, .. } = dims;
    let device = q.device();
    let kernel = Kernel::new(device, dims)?;
    let out = GpuStorage::alloc(device, q.len(), "attention")?;
    let lse = GpuStorage::alloc(device, b * h * n, "attention row statistics")?;
    kernel.launch(
        "forward",
        kernel.params(scale, bias.is_some(), 1, false),
        b * h,
        // Without a bias, q stands in for it (bound, never read).
        &[q, k, v, bias.unwrap_or(q)],
        &[&out, &lse],
    )?;
    Ok((out, lse))
}

/// The gradients the backward was asked for (None where it was not).
pub(crate) struct Grads {
    pub dq: Option<GpuStorage>,
    pub dk: Option<GpuStorage>,
    pub dv: Option<GpuStorage>,
    pub dbias: Option<GpuStorage>,
}

/// Which gradients to compute, in the order q, k, v, bias.
pub(crate) type Wanted = [bool; 4];

/// `stats` is [2, b·h·n]: each row's logsumexp L, then δ = rowsum(dO ⊙ O); `g` is dO.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    q: &GpuStorage,
    k: &GpuStorage,
    v: &GpuStorage,
    bias: Option<&GpuStorage>,
    stats: &GpuStorage,
    g: &GpuStorage,
    dims: Dims,
    scale: f64,
    [want_q, want_k, want_v, want_bias]: Wanted,
) -> Result<Grads> {
    let Dims { b, h, n, .. } = dims;
    let device = q.device();
    let kernel = Kernel::new(device, dims)?;
    let reads = [q, k, v, bias.unwrap_or(q), stats, g];
    let mut grads = Grads {
        dq: None,
        dk: None,
        dv: None,
        dbias: None,
    };

    if want_k || want_v {
        let dk = GpuStorage::alloc(device, q.len(), "attention dk")?;
        let dv = GpuStorage::alloc(device, q.len(), "attention dv")?;
        kernel.launch(
            if q.dtype() == DType::F16 {
                "backward_key_f16"
            } else {
                "backward_key"
            },
            kernel.params(scale, bias.is_some(), 1, false),
            b * h,
            &reads,
            &[&dk, &dv],
        )?;
        grads.dk = want_k.then_some(dk);
        grads.dv = want_v.then_some(dv);
    }

    let want_bias = want_bias && bias.is_some();
    if want_q || want_bias {
        // With a bias, each workgroup sums dS over a group of batch entries; without one it
        // takes a single entry, so the grid is as wide as the forward's.
        let group_size = if want_bias {
            BIAS_BATCH_GROUP.min(b).max(1)
        } else {
            1
        };
        let groups = b.div_ceil(group_size);
        let dq = GpuStorage::alloc(device, q.len(), "attention dq")?;
        let partial_len = if want_bias { groups * h * n * n } else { 1 };
        let partial = GpuStorage::alloc(device, partial_len, "attention dbias")?;
        kernel.launch(
            if q.dtype() == DType::F16 {
                "backward_query_f16"
            } else {
                "backward_query"
            },
            kernel.params(scale, bias.is_some(), group_size, want_bias),
            groups * h,
            &reads,
            &[&dq, &partial],
        )?;
        grads.dq = want_q.then_some(dq);
        if want_bias {
            grads.dbias = Some(if groups == 1 {
                partial
            } else {
                reduce_axis(&partial, 1, groups, h * n * n, ReduceOp::Sum)?
            });
        }
    }
    Ok(grads)
}
