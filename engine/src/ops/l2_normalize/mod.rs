//! L2 normalisation along an axis, x / max(||x||, eps), as torch.nn.functional.normalize:
//! the CLCE losses compare embeddings by cosine similarity, i.e. dot products of these.
mod cpu;
mod gpu;
#[cfg(test)]
mod tests;

use crate::autograd::BackwardOp;
use crate::{Error, Result, Storage, Tensor};

impl Tensor {
    /// x / max(||x||₂, eps) along `axis`; `eps` keeps near-zero vectors from blowing up.
    pub fn l2_normalize(&self, axis: isize, eps: f64) -> Result<Tensor> {
        let axis = self.shape().axis("l2_normalize", axis)?;
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(Error::invalid(
                "l2_normalize",
                format!("eps {eps} must be > 0"),
            ));
        }
        let (outer, n, inner) = self.shape().split_at_axis(axis);
        let storage = match &*self.storage() {
            Storage::Cpu(s) => Storage::Cpu(cpu::forward(s, n, inner, eps)),
            Storage::Gpu(s) => Storage::Gpu(gpu::forward(s, (outer, n, inner), eps)?),
            Storage::Meta(s) => Storage::Meta(s.like("l2_normalize")),
        };
        Ok(Tensor::from_op(
            storage,
            self.shape().clone(),
            self.device().clone(),
            L2NormalizeBackward { axis, eps },
            vec![self.clone()],
        ))
    }
}

struct L2NormalizeBackward {
    axis: usize,
    eps: f64,
}

impl BackwardOp for L2NormalizeBackward {
    fn name(&self) -> &'static str {
        "l2_normalize"
    }
    fn backward(&self, inputs: &[Tensor], out: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let x = &inputs[0];
        let (outer, n, inner) = x.shape().split_at_axis(self.axis);
        let storage = match (&*x.storage(), &*out.storage(), &*g.storage()) {
            (Storage::Cpu(x), Storage::Cpu(y), Storage::Cpu(g)) => {
                Storage::Cpu(cpu::backward(x, y, g, n, inner, self.eps))
            }
            (Storage::Gpu(x), Storage::Gpu(y), Storage::Gpu(g)) => {
                Storage::Gpu(gpu::backward(x, y, g, (outer, n, inner), self.eps)?)
            }
            (Storage::Meta(x), _, _) => Storage::Meta(x.like("l2_normalize backward")),
            _ => return Err(crate::storage::mixed_devices("l2_normalize")),
        };
        Ok(vec![Some(Tensor::from_storage(
            storage,
            x.shape().clone(),
            x.device().clone(),
        ))])
    }
}

pub(crate) fn gradcheck_cases() -> Vec<crate::gradcheck::Case> {
    use crate::gradcheck::Case;
    vec![
        Case::new("l2_normalize", &[&[3, 7]], |x| x[0].l2_normalize(-1, 1e-12)),
        Case::new("l2_normalize", &[&[1, 1]], |x| x[0].l2_normalize(1, 1e-12)),
        Case::new("l2_normalize", &[&[2, 5, 3]], |x| {
            x[0].l2_normalize(1, 1e-12)
        }),
        // Rows with norm below eps take the other branch: x / eps.
        Case::new("l2_normalize_tiny", &[&[2, 5]], |x| {
            x[0].l2_normalize(-1, 1e-3)
        })
        .with_init(|_, shape, _| {
            let n: usize = shape.iter().product();
            (0..n).map(|i| 1e-5 * (i as f64 - 4.5)).collect()
        }),
    ]
}
