//! Broadcasting arithmetic of two tensors: add, sub, mul, div (NumPy broadcasting rules).
mod cpu;
pub(crate) mod gpu;
#[cfg(test)]
mod tests;

use crate::autograd::BackwardOp;
use crate::{Result, Shape, Storage, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryOp {
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }
}

fn binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    a.check_same(op.name(), b)?;
    let out_shape = Shape::broadcast(op.name(), a.shape(), b.shape())?;
    let storage = match (&*a.storage(), &*b.storage()) {
        (Storage::Cpu(x), Storage::Cpu(y)) => {
            Storage::Cpu(cpu::binary(x, a.shape(), y, b.shape(), &out_shape, op))
        }
        (Storage::Gpu(x), Storage::Gpu(y)) => {
            Storage::Gpu(gpu::binary(x, a.shape(), y, b.shape(), &out_shape, op)?)
        }
        (Storage::Meta(x), Storage::Meta(_)) => {
            Storage::Meta(x.output(out_shape.numel(), op.name()))
        }
        _ => return Err(crate::storage::mixed_devices(op.name())),
    };
    Ok(Tensor::from_op(
        storage,
        out_shape,
        a.device().clone(),
        BinaryBackward(op),
        vec![a.clone(), b.clone()],
    ))
}

struct BinaryBackward(BinaryOp);

impl BackwardOp for BinaryBackward {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    /// add and sub need only the shapes; mul and div both factors.
    fn saves_input(&self, _index: usize) -> bool {
        matches!(self.0, BinaryOp::Mul | BinaryOp::Div)
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
        let (a, b) = (&inputs[0], &inputs[1]);
        // Each gradient is computed at the broadcast shape, then summed back to its input's.
        let (ga, gb) = match self.0 {
            BinaryOp::Add => (g.clone(), g.clone()),
            BinaryOp::Sub => (g.clone(), g.neg()?),
            BinaryOp::Mul => (g.mul(b)?, g.mul(a)?),
            BinaryOp::Div => (g.div(b)?, g.mul(a)?.div(&b.mul(b)?)?.neg()?),
        };
        let ga = a
            .requires_grad()
            .then(|| ga.sum_to(a.shape()))
            .transpose()?;
        let gb = b
            .requires_grad()
            .then(|| gb.sum_to(b.shape()))
            .transpose()?;
        Ok(vec![ga, gb])
    }
}

impl Tensor {
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Add)
    }
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Sub)
    }
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Mul)
    }
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Div)
    }
}

pub(crate) fn gradcheck_cases() -> Vec<crate::gradcheck::Case> {
    use crate::gradcheck::Case;
    type BinaryFn = fn(&Tensor, &Tensor) -> Result<Tensor>;
    let ops: [(&str, BinaryFn); 4] = [
        ("add", |a, b| a.add(b)),
        ("sub", |a, b| a.sub(b)),
        ("mul", |a, b| a.mul(b)),
        // Keep the divisor away from zero.
        ("div", |a, b| a.div(&b.mul(b)?.add_scalar(0.5)?)),
    ];
    let shapes: [(&[usize], &[usize]); 4] = [
        (&[1], &[1]),
        (&[3, 5], &[3, 5]),
        (&[2, 3, 7], &[7]),
        (&[4, 1, 3], &[5, 1]),
    ];
    let mut cases = Vec::new();
    for (name, f) in ops {
        for (sa, sb) in shapes {
            cases.push(Case::new(name, &[sa, sb], move |xs| f(&xs[0], &xs[1])));
        }
    }
    cases
}
