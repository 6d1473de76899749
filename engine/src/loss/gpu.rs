//! The contrastive losses on a GPU tensor: shaders/lacln.wgsl, with the same
//! statistics and closed-form dL/dS as the CPU ops in `lacln.rs`, `supcon.rs` and `hscl.rs`.
//!
//! Forward: K = z zᵀ on the engine's matmul, one workgroup per anchor reduces its row of
//! S = K / τ to four log-space statistics and its term of the loss, and a sum finishes the
//! mean. Backward: one invocation per element of dL/dS (symmetrised, so that one more matmul
//! gives dz). Nothing but the labels crosses between host and device; the counts the mean
//! divides by depend on the labels only, so the host works them out.
use std::collections::HashMap;

use crate::autograd::BackwardOp;
use crate::gpu::{linear_grid, shaders, GpuBuffer, GpuStorage, Launch, Params};
use crate::ops::matmul::{gpu::matmul, MatmulDims};
use crate::ops::reduce::{gpu::reduce_axis, ReduceOp};
use crate::{Result, Shape, Storage, Tensor};

/// Which loss, as the shader's `LOSS` override picks it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Loss {
    /// β = 0 is `lacln-nohnm`, as on the CPU.
    Lacln {
        beta: f64,
    },
    SupCon,
    Hscl {
        beta: f64,
    },
}

impl Loss {
    fn name(self) -> &'static str {
        match self {
            Loss::Lacln { .. } => "lacln",
            Loss::SupCon => "supcon",
            Loss::Hscl { .. } => "hscl",
        }
    }

    fn code(self) -> f64 {
        match self {
            Loss::Lacln { .. } => 0.0,
            Loss::SupCon => 1.0,
            Loss::Hscl { .. } => 2.0,
        }
    }

    fn beta(self) -> f64 {
        match self {
            Loss::Lacln { beta } | Loss::Hscl { beta } => beta,
            Loss::SupCon => 0.0,
        }
    }

    /// What the mean divides by: the anchors with a positive (A), or for H-SCL the positive
    /// pairs (T). An anchor of class y has |P(i)| = (number of class y) - 1.
    fn count(self, labels: &[usize]) -> usize {
        let mut per_class: HashMap<usize, usize> = HashMap::new();
        for &y in labels {
            *per_class.entry(y).or_default() += 1;
        }
        per_class
            .values()
            .filter(|&&n| n > 1)
            .map(|&n| match self {
                Loss::Hscl { .. } => n * (n - 1),
                _ => n,
            })
            .sum()
    }
}

fn params(loss: Loss, m: usize, tau: f64, count: usize) -> Params {
    let inv_count = if count == 0 { 0.0 } else { 1.0 / count as f64 };
    Params::new()
        .u32(m)
        .f32(1.0 / tau)
        .f32(loss.beta())
        .f32(inv_count)
}

/// `loss` of the L2-normalised features `z` [M, D] (on a GPU) with class `labels`, checked
/// by the caller, as a scalar on z's device.
pub(super) fn forward(loss: Loss, z: &Tensor, labels: &[usize], tau: f64) -> Result<Tensor> {
    let zs = z.gpu_storage(loss.name())?;
    let device = zs.device();
    let (m, d) = (labels.len(), z.dims()[1]);
    let gram = matmul(&zs, &zs, &product(m, d, m, true))?;
    let labels_buffer = GpuBuffer::upload_indices(device, labels, "contrastive labels")?;
    let stats = GpuStorage::alloc(device, 4 * m, "contrastive anchors")?;
    let row_loss = GpuStorage::alloc(device, m, "contrastive anchors")?;
    let count = loss.count(labels);
    device.launch(Launch {
        shader: &shaders::LACLN,
        entry: "anchors",
        constants: &[("LOSS", loss.code())],
        params: params(loss, m, tau, count),
        reads: &[gram.buffer(), &labels_buffer],
        writes: &[stats.buffer(), row_loss.buffer()],
        workgroups: linear_grid(device, m, 1)?,
    })?;
    let value = reduce_axis(&row_loss, 1, m, 1, ReduceOp::Sum)?;
    let saved = ContrastiveBackward {
        loss,
        tau,
        count,
        gram,
        stats,
        labels: labels_buffer,
    };
    Ok(Tensor::from_op(
        Storage::Gpu(value),
        Shape::scalar(),
        z.device().clone(),
        saved,
        vec![z.clone()],
    ))
}

/// One [m, k] by [k, n] product; `trans_b`: the right operand is stored as [n, k].
fn product(m: usize, k: usize, n: usize, trans_b: bool) -> MatmulDims {
    MatmulDims {
        batch: 1,
        m,
        k,
        n,
        trans_a: false,
        trans_b,
        a_batched: false,
        b_batched: false,
    }
}

/// What the backward pass needs: K = z zᵀ (S times τ, M×M) and every anchor's statistics
/// (4 per anchor, laid out as the shader's `anchors` entry describes).
struct ContrastiveBackward {
    loss: Loss,
    tau: f64,
    count: usize,
    gram: GpuStorage,
    stats: GpuStorage,
    labels: GpuBuffer,
}

impl BackwardOp for ContrastiveBackward {
    fn name(&self) -> &'static str {
        self.loss.name()
    }
    fn saves_output(&self) -> bool {
        false
    }
    fn backward(
        &self,
        inputs: &[Tensor],
        _output: &Tensor,
        grad_output: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let z = &inputs[0];
        let zs = z.gpu_storage(self.loss.name())?;
        let upstream = grad_output.gpu_storage(self.loss.name())?;
        let device = zs.device();
        let (m, d) = (z.dims()[0], z.dims()[1]);
        let symmetric = GpuStorage::alloc(device, m * m, "contrastive backward")?;
        device.launch(Launch {
            shader: &shaders::LACLN,
            entry: "d_similarity",
            constants: &[("LOSS", self.loss.code())],
            params: params(self.loss, m, self.tau, self.count),
            reads: &[
                self.gram.buffer(),
                &self.labels,
                self.stats.buffer(),
                upstream.buffer(),
            ],
            writes: &[symmetric.buffer()],
            workgroups: linear_grid(device, m * m, 256)?,
        })?;
        let dz = matmul(&symmetric, &zs, &product(m, m, d, false))?;
        Ok(vec![Some(Tensor::from_storage(
            Storage::Gpu(dz),
            z.shape().clone(),
            z.device().clone(),
        ))])
    }
}
