//! Reductions: sum, mean and max over an axis, whole-tensor sum/mean, and the pair
//! `sum_to` / `broadcast_to` that move between a shape and a broadcast of it.
pub(crate) mod cpu;
pub(crate) mod gpu;
#[cfg(test)]
mod tests;

use crate::autograd::BackwardOp;
use crate::{ensure_shape, Result, Shape, Storage, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Max,
}

fn kept_shape(x: &Tensor, axis: usize) -> Shape {
    x.shape().with_dim(axis, 1)
}

fn reduce(x: &Tensor, axis: isize, keepdim: bool, op: ReduceOp) -> Result<Tensor> {
    let name = if op == ReduceOp::Sum { "sum" } else { "max" };
    let axis = x.shape().axis(name, axis)?;
    let (outer, n, inner) = x.shape().split_at_axis(axis);
    ensure_shape!(n > 0 || op == ReduceOp::Sum, name, "max over an empty axis");
    let storage = match &*x.storage() {
        Storage::Cpu(s) => Storage::Cpu(cpu::reduce_axis(s, outer, n, inner, op)),
        Storage::Gpu(s) => Storage::Gpu(gpu::reduce_axis(s, outer, n, inner, op)?),
        Storage::Meta(s) => Storage::Meta(s.output(outer * inner, name)),
    };
    let kept = kept_shape(x, axis);
    let backward = ReduceBackward { op, axis };
    let out = Tensor::from_op(storage, kept, x.device().clone(), backward, vec![x.clone()]);
    if keepdim {
        Ok(out)
    } else {
        let mut dims = x.dims().to_vec();
        dims.remove(axis);
        out.reshape(dims)
    }
}

struct ReduceBackward {
    op: ReduceOp,
    axis: usize,
}

impl BackwardOp for ReduceBackward {
    fn name(&self) -> &'static str {
        match self.op {
            ReduceOp::Sum => "sum",
            ReduceOp::Max => "max",
        }
    }
    /// max finds where the maximum was from the input and the output; sum needs the shape.
    fn saves_input(&self, _index: usize) -> bool {
        self.op == ReduceOp::Max
    }
    fn saves_output(&self) -> bool {
        self.op == ReduceOp::Max
    }
    fn backward(&self, inputs: &[Tensor], out: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let x = &inputs[0];
        let dx = match self.op {
            ReduceOp::Sum => g.broadcast_to(x.shape())?,
            ReduceOp::Max => {
                // The whole gradient goes to the first maximum, as torch.max(dim) does.
                let (outer, n, inner) = x.shape().split_at_axis(self.axis);
                let storage = match (&*x.storage(), &*out.storage(), &*g.storage()) {
                    (Storage::Cpu(xs), Storage::Cpu(os), Storage::Cpu(gs)) => {
                        Storage::Cpu(cpu::max_backward(xs, os, gs, outer, n, inner))
                    }
                    (Storage::Gpu(xs), Storage::Gpu(os), Storage::Gpu(gs)) => {
                        Storage::Gpu(gpu::max_backward(xs, os, gs, outer, n, inner)?)
                    }
                    (Storage::Meta(xs), _, _) => Storage::Meta(xs.output(xs.len(), "max backward")),
                    _ => return Err(crate::storage::mixed_devices("max backward")),
                };
                Tensor::from_storage(storage, x.shape().clone(), x.device().clone())
            }
        };
        Ok(vec![Some(dx)])
    }
}

impl Tensor {
    /// Sum over `axis` (negative counts from the end).
    pub fn sum(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        reduce(self, axis, keepdim, ReduceOp::Sum)
    }
    pub fn mean(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        let n = self.shape().dim(axis)?;
        self.sum(axis, keepdim)?.mul_scalar(1.0 / n as f64)
    }
    /// Maximum over `axis`; its gradient flows to the first maximal element.
    pub fn max(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        reduce(self, axis, keepdim, ReduceOp::Max)
    }
    /// Sum of every element, as a tensor of shape [].
    pub fn sum_all(&self) -> Result<Tensor> {
        self.reshape([self.numel()])?.sum(0, false)
    }
    pub fn mean_all(&self) -> Result<Tensor> {
        let n = self.numel().max(1);
        self.sum_all()?.mul_scalar(1.0 / n as f64)
    }

    /// Sums a broadcast tensor back down to `shape` (the adjoint of `broadcast_to`).
    pub fn sum_to(&self, shape: &Shape) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let b = Shape::broadcast("sum_to", shape, self.shape())?;
        ensure_shape!(
            &b == self.shape(),
            "sum_to",
            "{:?} does not broadcast to {:?}",
            shape,
            self.shape()
        );
        let storage = match &*self.storage() {
            Storage::Cpu(s) => Storage::Cpu(cpu::sum_to(s, self.shape(), shape)),
            Storage::Gpu(s) => Storage::Gpu(gpu::sum_to(s, self.shape(), shape)?),
            Storage::Meta(s) => Storage::Meta(s.output(shape.numel(), "sum_to")),
        };
        Ok(Tensor::from_op(
            storage,
            shape.clone(),
            self.device().clone(),
            SumToBackward,
            vec![self.clone()],
        ))
    }

    /// Repeats this tensor along broadcast dimensions to `shape` (a copy).
    pub fn broadcast_to(&self, shape: &Shape) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let b = Shape::broadcast("broadcast_to", self.shape(), shape)?;
        ensure_shape!(
            &b == shape,
            "broadcast_to",
            "{:?} does not broadcast to {:?}",
            self.shape(),
            shape
        );
        let storage = match &*self.storage() {
            Storage::Cpu(s) => Storage::Cpu(cpu::broadcast_to(s, self.shape(), shape)),
            Storage::Gpu(s) => Storage::Gpu(gpu::broadcast_to(s, self.shape(), shape)?),
            Storage::Meta(s) => Storage::Meta(s.output(shape.numel(), "broadcast_to")),
        };
        Ok(Tensor::from_op(
            storage,
            shape.clone(),
            self.device().clone(),
            BroadcastBackward,
            vec![self.clone()],
        ))
    }
}

struct SumToBackward;
impl BackwardOp for SumToBackward {
    fn name(&self) -> &'static str {
        "sum_to"
    }
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
        Ok(vec![Some(g.broadcast_to(inputs[0].shape())?)])
    }
}

struct BroadcastBackward;
impl BackwardOp for BroadcastBackward {
    fn name(&self) -> &'static str {
        "broadcast_to"
    }
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
        Ok(vec![Some(g.sum_to(inputs[0].shape())?)])
    }
}

pub(crate) fn gradcheck_cases() -> Vec<crate::gradcheck::Case> {
    use crate::gradcheck::Case;
    vec![
        Case::new("sum", &[&[3, 5, 2]], |x| x[0].sum(1, false)),
        Case::new("sum", &[&[1]], |x| x[0].sum(0, true)),
        Case::new("mean", &[&[4, 7]], |x| x[0].mean(-1, true)),
        Case::new("mean", &[&[13]], |x| x[0].mean_all()),
        Case::new("max", &[&[3, 11]], |x| x[0].max(1, false)),
        Case::new("max", &[&[5, 2, 3]], |x| x[0].max(0, true)),
        Case::new("sum_to", &[&[4, 3, 5]], |x| {
            x[0].sum_to(&Shape::from([3, 1]))
        }),
        Case::new("broadcast_to", &[&[3, 1]], |x| {
            x[0].broadcast_to(&Shape::from([2, 3, 7]))
        }),
    ]
}
