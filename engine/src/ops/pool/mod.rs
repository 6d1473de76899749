//! Pooling over the spatial axes of x [N,C,H,W], as in PyTorch: `max_pool2d` and
//! `avg_pool2d` slide a square window with one stride and zero padding over every channel
//! plane (output Ho = (H + 2·padding − kernel) / stride + 1); `global_avg_pool2d` averages
//! each whole plane to one value, [N,C].
//!
//! Max pooling treats padding as −∞ and sends each output's gradient to its window's maximum
//! (the first one in row-major order on ties, as PyTorch does), whose position the forward
//! pass keeps (`MaxPositions`). Average pooling counts the
//! padding as zeros in the mean (PyTorch's default count_include_pad=True), so every window
//! divides by kernel².
pub(crate) mod cpu;
mod gpu;
#[cfg(test)]
mod tests;

use crate::autograd::BackwardOp;
use crate::gpu::GpuStorage;
use crate::memory::meta::MetaStorage;
use crate::{ensure_shape, AllocatorModel, Error, Result, Shape, Storage, Tensor};

/// Sizes of one pooling call, worked out from the input shape and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dDims {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Pool2dDims {
    fn new(
        op: &'static str,
        x: &Shape,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let &[n, c, h, w] = x.dims() else {
            return Err(Error::shape(op, format!("x must be [N,C,H,W], got {x:?}")));
        };
        ensure_shape!(h > 0 && w > 0, op, "empty planes in {x:?}");
        if kernel == 0 || stride == 0 {
            return Err(Error::invalid(op, "kernel and stride must be at least 1"));
        }
        // PyTorch's rule; it also guarantees that every window covers part of the input.
        if 2 * padding > kernel {
            return Err(Error::invalid(
                op,
                format!("padding {padding} is more than half the kernel {kernel}"),
            ));
        }
        ensure_shape!(
            kernel <= h + 2 * padding && kernel <= w + 2 * padding,
            op,
            "kernel {kernel} is larger than the padded input {}x{}",
            h + 2 * padding,
            w + 2 * padding
        );
        Ok(Pool2dDims {
            n,
            c,
            h,
            w,
            kernel,
            stride,
            padding,
            ho: (h + 2 * padding - kernel) / stride + 1,
            wo: (w + 2 * padding - kernel) / stride + 1,
        })
    }

    fn out_shape(&self) -> Shape {
        Shape::from([self.n, self.c, self.ho, self.wo])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

impl PoolKind {
    fn name(self) -> &'static str {
        match self {
            PoolKind::Max => "max_pool2d",
            PoolKind::Avg => "avg_pool2d",
        }
    }
}

fn pool2d(
    x: &Tensor,
    kind: PoolKind,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let dims = Pool2dDims::new(kind.name(), x.shape(), kernel, stride, padding)?;
    let out_len = dims.out_shape().numel();
    let (storage, max_at) = match (&*x.storage(), kind) {
        (Storage::Cpu(s), PoolKind::Max) => {
            let (y, at) = cpu::max_forward(s, &dims);
            (Storage::Cpu(y), Some(MaxPositions::Cpu(at)))
        }
        (Storage::Cpu(s), PoolKind::Avg) => (Storage::Cpu(cpu::avg_forward(s, &dims)), None),
        (Storage::Gpu(s), PoolKind::Max) => {
            let (y, at) = gpu::max_forward(s, &dims)?;
            (Storage::Gpu(y), Some(MaxPositions::Gpu(at)))
        }
        (Storage::Gpu(s), PoolKind::Avg) => (Storage::Gpu(gpu::avg_forward(s, &dims)?), None),
        (Storage::Meta(s), PoolKind::Max) => {
            let y = s.output(out_len, kind.name());
            // A GPU keeps the positions in a buffer of its pool. The CPU keeps them in a Vec,
            // which is not tensor memory: its measured peak leaves them out, so the plan does.
            let at = match s.device().model() {
                AllocatorModel::Gpu { .. } => Some(s.output(out_len, kind.name())),
                AllocatorModel::Cpu => None,
            };
            (Storage::Meta(y), Some(MaxPositions::Meta(at)))
        }
        (Storage::Meta(s), PoolKind::Avg) => (Storage::Meta(s.output(out_len, kind.name())), None),
    };
    Ok(Tensor::from_op(
        storage,
        dims.out_shape(),
        x.device().clone(),
        Pool2dBackward { kind, dims, max_at },
        vec![x.clone()],
    ))
}

/// Where each output's maximum is in its input plane, found by the forward pass. The backward
/// pass sends each output's gradient there: no second search of every window, no saved input
/// (the positions have a quarter of its elements for the ResNet stem's 3/2 pool), and the
/// gradient stays on the forward's
/// maximum even where the input would have been kept in f16, whose rounding can tie a window.
enum MaxPositions {
    Cpu(Vec<u32>),
    /// u32 positions in a buffer of one 32-bit word per output.
    Gpu(GpuStorage),
    /// The meta device: the GPU buffer as `plan` counts it, or nothing for the CPU's `Vec`.
    /// Never read: held so that its bytes stay counted until the backward pass.
    Meta(#[allow(dead_code)] Option<MetaStorage>),
}

struct Pool2dBackward {
    kind: PoolKind,
    dims: Pool2dDims,
    /// Max pooling only.
    max_at: Option<MaxPositions>,
}

impl BackwardOp for Pool2dBackward {
    fn name(&self) -> &'static str {
        self.kind.name()
    }
    /// Max pooling has its positions, and average pooling's gradient depends only on g.
    fn saves_input(&self, _index: usize) -> bool {
        false
    }
    fn saves_output(&self) -> bool {
        false
    }
    fn backward(
        &self,
        inputs: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let x = &inputs[0];
        let name = self.kind.name();
        let d = &self.dims;
        let storage = match (&self.max_at, &*g.storage()) {
            (Some(MaxPositions::Cpu(at)), Storage::Cpu(gs)) => {
                Storage::Cpu(cpu::max_backward(gs, at, d))
            }
            (Some(MaxPositions::Gpu(at)), Storage::Gpu(gs)) => {
                Storage::Gpu(gpu::max_backward(at, gs, d)?)
            }
            (None, Storage::Cpu(gs)) => Storage::Cpu(cpu::avg_backward(gs, d)),
            (None, Storage::Gpu(gs)) => Storage::Gpu(gpu::avg_backward(gs, d)?),
            (Some(MaxPositions::Meta(_)) | None, Storage::Meta(gs)) => {
                Storage::Meta(gs.output(x.shape().numel(), name))
            }
            _ => return Err(crate::storage::mixed_devices(name)),
        };
        Ok(vec![Some(Tensor::from_storage(
            storage,
            x.shape().clone(),
            x.device().clone(),
        ))])
    }
}

impl Tensor {
    /// Maximum over kernel x kernel windows of [N,C,H,W] (padding counts as −∞).
    pub fn max_pool2d(&self, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
        pool2d(self, PoolKind::Max, kernel, stride, padding)
    }

    /// Mean over kernel x kernel windows of [N,C,H,W], padding counted as zeros.
    pub fn avg_pool2d(&self, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
        pool2d(self, PoolKind::Avg, kernel, stride, padding)
    }

    /// Mean of each channel plane: [N,C,H,W] -> [N,C].
    pub fn global_avg_pool2d(&self) -> Result<Tensor> {
        let &[n, c, h, w] = self.dims() else {
            return Err(Error::shape(
                "global_avg_pool2d",
                format!("x must be [N,C,H,W], got {:?}", self.shape()),
            ));
        };
        self.reshape([n, c, h * w])?.mean(-1, false)
    }
}

/// A random arrangement of evenly spaced values: no ties, and gaps (0.1) far wider than the
/// finite-difference step, so the maximum of a window never changes under perturbation.
fn distinct_values(len: usize, seed: u64) -> Vec<f64> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut v: Vec<f64> = (0..len)
        .map(|i| 0.1 * i as f64 - 0.05 * len as f64)
        .collect();
    v.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    v
}

pub(crate) fn gradcheck_cases() -> Vec<crate::gradcheck::Case> {
    use crate::gradcheck::Case;
    // (x shape, kernel, stride, padding): a single pixel, non-overlapping windows that leave an
    // odd column out, the ResNet stem's overlapping 3/2/1 pool, and stride 1 with padding.
    let configs: [([usize; 4], usize, usize, usize); 4] = [
        ([1, 1, 1, 1], 1, 1, 0),
        ([2, 3, 6, 5], 2, 2, 0),
        ([1, 2, 7, 7], 3, 2, 1),
        ([1, 1, 5, 4], 3, 1, 1),
    ];
    let mut cases = Vec::new();
    for (shape, k, s, p) in configs {
        let label = format!("k{k}s{s}p{p}");
        cases.push(
            Case::new(&format!("max_pool2d_{label}"), &[&shape], move |x| {
                x[0].max_pool2d(k, s, p)
            })
            .with_init(|_, shape, seed| distinct_values(shape.iter().product(), seed)),
        );
        cases.push(Case::new(
            &format!("avg_pool2d_{label}"),
            &[&shape],
            move |x| x[0].avg_pool2d(k, s, p),
        ));
    }
    for shape in [[1, 1, 1, 1], [2, 3, 5, 4]] {
        cases.push(Case::new("global_avg_pool2d", &[&shape], |x| {
            x[0].global_avg_pool2d()
        }));
    }
    cases
}
