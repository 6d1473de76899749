//! 2-D convolution as torch.nn.functional.conv2d (a cross-correlation): x [N,C,H,W] with
//! weights [O,C,kh,kw], one stride and one zero padding for both spatial axes, and an optional
//! bias [O]; the output is [N,O,Ho,Wo] with Ho = (H + 2·padding − kh) / stride + 1.
//!
//! On the CPU every sample is lowered to one matrix product. im2col unfolds the sample into
//! cols [C·kh·kw, Ho·Wo], one column per output pixel holding the input values under the
//! kernel there, so that y = W[O, C·kh·kw] · cols. The backward pass is two more products:
//! d cols = Wᵀ · dy, folded back onto the input by col2im (the adjoint of im2col), and
//! dW = Σ_samples dy · colsᵀ.
pub(crate) mod cpu;
mod gpu;
#[cfg(test)]
mod tests;

use crate::autograd::BackwardOp;
use crate::memory::meta::{AllocatorModel, MetaStorage};
use crate::{ensure_shape, Error, Result, Shape, Storage, Tensor};

/// Sizes of one conv2d call, worked out from the shapes and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dDims {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub padding: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Conv2dDims {
    fn new(x: &Shape, w: &Shape, stride: usize, padding: usize) -> Result<Self> {
        const OP: &str = "conv2d";
        ensure_shape!(x.rank() == 4, OP, "x must be [N,C,H,W], got {x:?}");
        ensure_shape!(w.rank() == 4, OP, "weight must be [O,C,kh,kw], got {w:?}");
        let (&[n, c, h, wd], &[o, wc, kh, kw]) = (x.dims(), w.dims()) else {
            unreachable!("ranks checked above")
        };
        ensure_shape!(
            c == wc,
            OP,
            "x has {c} channels but the weight {w:?} expects {wc}"
        );
        ensure_shape!(
            [c, h, wd, o, kh, kw].iter().all(|&s| s > 0),
            OP,
            "zero-sized dimension in x {x:?} or weight {w:?} (only the batch may be empty)"
        );
        if stride == 0 {
            return Err(Error::invalid(OP, "stride must be at least 1"));
        }
        ensure_shape!(
            kh <= h + 2 * padding && kw <= wd + 2 * padding,
            OP,
            "kernel {kh}x{kw} is larger than the padded input {}x{}",
            h + 2 * padding,
            wd + 2 * padding
        );
        Ok(Conv2dDims {
            n,
            c,
            h,
            w: wd,
            o,
            kh,
            kw,
            stride,
            padding,
            ho: (h + 2 * padding - kh) / stride + 1,
            wo: (wd + 2 * padding - kw) / stride + 1,
        })
    }

    /// Rows of the im2col matrix: the values one output pixel sees.
    pub fn patch_len(&self) -> usize {
        self.c * self.kh * self.kw
    }
    pub fn out_pixels(&self) -> usize {
        self.ho * self.wo
    }
    /// A 1x1 kernel at stride 1 without padding sees exactly the input: its im2col matrix is
    /// the sample itself, [C, H·W], so the unfolding is skipped.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.padding == 0
    }
}

impl Tensor {
    /// 2-D convolution of [N,C,H,W] by weights [O,C,kh,kw] (+ bias [O]) -> [N,O,Ho,Wo].
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
    ) -> Result<Tensor> {
        self.check_same("conv2d", weight)?;
        let d = Conv2dDims::new(self.shape(), weight.shape(), stride, padding)?;
        let mut inputs = vec![self.clone(), weight.clone()];
        if let Some(b) = bias {
            self.check_same("conv2d", b)?;
            ensure_shape!(
                b.dims() == [d.o],
                "conv2d",
                "bias must be [{}], got {:?}",
                d.o,
                b.shape()
            );
            inputs.push(b.clone());
        }
        let storage = {
            let bias_storage = bias.map(|b| b.storage());
            match (
                &*self.storage(),
                &*weight.storage(),
                bias_storage.as_deref(),
            ) {
                (Storage::Cpu(x), Storage::Cpu(w), None) => {
                    Storage::Cpu(cpu::forward(x, w, None, &d))
                }
                (Storage::Cpu(x), Storage::Cpu(w), Some(Storage::Cpu(b))) => {
                    Storage::Cpu(cpu::forward(x, w, Some(b), &d))
                }
                (Storage::Gpu(x), Storage::Gpu(w), None) => {
                    Storage::Gpu(gpu::forward(x, w, None, &d)?)
                }
                (Storage::Gpu(x), Storage::Gpu(w), Some(Storage::Gpu(b))) => {
                    Storage::Gpu(gpu::forward(x, w, Some(b), &d)?)
                }
                (Storage::Meta(x), Storage::Meta(_), _) => {
                    unfolded_scratch(x, &d);
                    Storage::Meta(x.output(d.n * d.o * d.out_pixels(), "conv2d"))
                }
                _ => return Err(crate::storage::mixed_devices("conv2d")),
            }
        };
        Ok(Tensor::from_op(
            storage,
            Shape::from([d.n, d.o, d.ho, d.wo]),
            self.device().clone(),
            Conv2dBackward { dims: d },
            inputs,
        ))
    }
}

/// The unfolded columns (im2col) a GPU conv2d works through, chunk by chunk: counted on the
/// meta device as a buffer that lives only during the op. The CPU's columns are host scratch
/// outside tensor storage.
fn unfolded_scratch(x: &MetaStorage, d: &Conv2dDims) {
    if let AllocatorModel::Gpu { binding_limit, .. } = x.device().model() {
        if !d.is_pointwise() {
            let per_sample = 4 * (d.patch_len().max(d.o) * d.out_pixels()) as u64;
            let limit = binding_limit.min(gpu::CHUNK_BYTES);
            let chunk = ((limit / per_sample.max(1)) as usize).clamp(1, d.n.max(1));
            drop(x.output(chunk * d.patch_len() * d.out_pixels(), "conv2d im2col"));
        }
    }
}

struct Conv2dBackward {
    dims: Conv2dDims,
}

/// Which gradients a backward pass has to produce.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wanted {
    pub input: bool,
    pub weight: bool,
    pub bias: bool,
}

impl BackwardOp for Conv2dBackward {
    fn name(&self) -> &'static str {
        "conv2d"
    }
    /// x and the weight, not the bias.
    fn saves_input(&self, index: usize) -> bool {
        index < 2
    }
    /// x, which only im2col reads (a sample at a time on the CPU).
    fn reads_f16(&self, index: usize) -> bool {
        index == 0
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
        let (x, w) = (&inputs[0], &inputs[1]);
        let wanted = Wanted {
            input: x.requires_grad(),
            weight: w.requires_grad(),
            bias: inputs.get(2).is_some_and(|b| b.requires_grad()),
        };
        let grads = match (&*x.storage(), &*w.storage(), &*g.storage()) {
            (Storage::Cpu(xs), Storage::Cpu(ws), Storage::Cpu(gs)) => {
                let g = cpu::backward(xs, ws, gs, &self.dims, wanted);
                let cpu = |s: Option<crate::CpuStorage>| s.map(Storage::Cpu);
                [cpu(g.input), cpu(g.weight), cpu(g.bias)]
            }
            (Storage::Gpu(xs), Storage::Gpu(ws), Storage::Gpu(gs)) => {
                let g = gpu::backward(xs, ws, gs, &self.dims, wanted)?;
                let gpu = |s: Option<crate::gpu::GpuStorage>| s.map(Storage::Gpu);
                [gpu(g.input), gpu(g.weight), gpu(g.bias)]
            }
            (Storage::Meta(xs), Storage::Meta(ws), Storage::Meta(_)) => {
                unfolded_scratch(xs, &self.dims);
                let meta = |want: bool, len: usize| {
                    want.then(|| Storage::Meta(xs.output(len, "conv2d backward")))
                };
                [
                    meta(wanted.input, xs.len()),
                    meta(wanted.weight, ws.len()),
                    meta(wanted.bias, self.dims.o),
                ]
            }
            _ => return Err(crate::storage::mixed_devices("conv2d")),
        };
        let [input, weight, bias] = grads;
        let wrap = |s: Option<Storage>, like: &Tensor| {
            s.map(|s| Tensor::from_storage(s, like.shape().clone(), like.device().clone()))
        };
        let mut out = vec![wrap(input, x), wrap(weight, w)];
        if let Some(b) = inputs.get(2) {
            out.push(wrap(bias, b));
        }
        Ok(out)
    }
}

pub(crate) fn gradcheck_cases() -> Vec<crate::gradcheck::Case> {
    use crate::gradcheck::Case;
    let mut cases = Vec::new();
    // (x shape, kernel size, out channels, stride, padding)
    let configs: [([usize; 4], usize, usize, usize, usize); 6] = [
        ([1, 1, 1, 1], 1, 1, 1, 0),
        ([2, 3, 5, 4], 1, 5, 1, 0),
        ([2, 3, 5, 5], 3, 2, 1, 1),
        ([1, 3, 7, 5], 3, 3, 2, 0),
        ([2, 1, 6, 7], 3, 3, 2, 1),
        ([1, 5, 5, 3], 1, 3, 2, 1),
    ];
    for (xs, k, o, stride, padding) in configs {
        let ws = [o, xs[1], k, k];
        let label = format!("k{k}s{stride}p{padding}");
        cases.push(Case::new(
            &format!("conv2d_{label}"),
            &[&xs, &ws],
            move |t| t[0].conv2d(&t[1], None, stride, padding),
        ));
        cases.push(Case::new(
            &format!("conv2d_bias_{label}"),
            &[&xs, &ws, &[o]],
            move |t| t[0].conv2d(&t[1], Some(&t[2]), stride, padding),
        ));
    }
    cases
}
