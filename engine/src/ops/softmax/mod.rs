//! softmax and log_softmax along any axis, numerically stable (each lane is shifted by its
//! maximum), each with a dedicated backward kernel that needs only the op's output.
pub(crate) mod cpu;
pub(crate) mod gpu;
#[cfg(test)]
mod tests;

use crate::autograd::BackwardOp;
use crate::{Result, Storage, Tensor};

impl Tensor {
    /// exp(x) / sum(exp(x)) along `axis` (negative counts from the end).
    pub fn softmax(&self, axis: isize) -> Result<Tensor> {
        softmax(self, axis, false)
    }

    /// log(softmax(x)) along `axis`, computed as x - max - log(sum(exp(x - max))).
    pub fn log_softmax(&self, axis: isize) -> Result<Tensor> {
        softmax(self, axis, true)
    }
}

fn softmax(x: &Tensor, axis: isize, log: bool) -> Result<Tensor> {
    let name = if log { "log_softmax" } else { "softmax" };
    let axis = x.shape().axis(name, axis)?;
    let (outer, n, inner) = x.shape().split_at_axis(axis);
    let storage = match &*x.storage() {
        Storage::Cpu(s) => Storage::Cpu(cpu::softmax(s, n, inner, log)),
        Storage::Gpu(s) => Storage::Gpu(gpu::softmax(s, outer, n, inner, log)?),
        Storage::Meta(s) => Storage::Meta(s.like(name)),
    };
    Ok(Tensor::from_op(
        storage,
        x.shape().clone(),
        x.device().clone(),
        SoftmaxBackward { axis, log },
        vec![x.clone()],
    ))
}

/// The input gradient of softmax (`log` false) or log_softmax along `axis`, given the op's
/// output `y` and the output gradient `g`. Not recorded; attention reuses it.
pub(crate) fn softmax_grad(y: &Tensor, g: &Tensor, axis: usize, log: bool) -> Result<Tensor> {
    y.check_same("softmax_backward", g)?;
    let (outer, n, inner) = y.shape().split_at_axis(axis);
    let storage = match (&*y.storage(), &*g.storage()) {
        (Storage::Cpu(y), Storage::Cpu(g)) => {
            Storage::Cpu(cpu::softmax_backward(y, g, n, inner, log))
        }
        (Storage::Gpu(y), Storage::Gpu(g)) => {
            Storage::Gpu(gpu::softmax_backward(y, g, outer, n, inner, log)?)
        }
        (Storage::Meta(y), Storage::Meta(_)) => Storage::Meta(y.like("softmax_backward")),
        _ => return Err(crate::storage::mixed_devices("softmax_backward")),
    };
    Ok(Tensor::from_storage(
        storage,
        y.shape().clone(),
        y.device().clone(),
    ))
}

struct SoftmaxBackward {
    axis: usize,
    log: bool,
}

impl BackwardOp for SoftmaxBackward {
    fn name(&self) -> &'static str {
        if self.log {
            "log_softmax"
        } else {
            "softmax"
        }
    }
    fn saves_input(&self, _index: usize) -> bool {
        false
    }
    fn backward(
        &self,
        _inputs: &[Tensor],
        out: &Tensor,
        g: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(softmax_grad(out, g, self.axis, self.log)?)])
    }
}

pub(crate) fn gradcheck_cases() -> Vec<crate::gradcheck::Case> {
    use crate::gradcheck::Case;
    let mut cases = Vec::new();
    for log in [false, true] {
        let name = if log { "log_softmax" } else { "softmax" };
        let f = move |x: &Tensor, axis: isize| {
            if log {
                x.log_softmax(axis)
            } else {
                x.softmax(axis)
            }
        };
        cases.extend([
            Case::new(name, &[&[1]], move |x| f(&x[0], 0)),
            Case::new(name, &[&[3, 7]], move |x| f(&x[0], -1)),
            Case::new(name, &[&[2, 5, 3]], move |x| f(&x[0], 1)),
            Case::new(name, &[&[5, 1, 2]], move |x| f(&x[0], 0)),
        ]);
    }
    cases
}
