//! gelu(x + bias), the bias along the last dimension: a linear layer's bias and the GELU after
//! it (BEiT's MLP) as one op. Its values are those of `x.add(bias)?.gelu()` (the same f32
//! operations in the same order); it saves one pass over the activation each way, and on the
//! GPU one dispatch forward and one backward.
mod cpu;
mod gpu;
#[cfg(test)]
mod tests;

use crate::autograd::BackwardOp;
use crate::{ensure_shape, Result, Storage, Tensor};

impl Tensor {
    /// gelu(self + bias) (exact GELU, as [`Tensor::gelu`]), `bias` of shape [last dim].
    pub fn bias_gelu(&self, bias: &Tensor) -> Result<Tensor> {
        self.check_same("bias_gelu", bias)?;
        let d = self.dims().last().copied();
        ensure_shape!(
            d.is_some() && bias.dims() == [d.unwrap_or(0)],
            "bias_gelu",
            "bias {:?} is not [last dim] of {:?}",
            bias.dims(),
            self.dims()
        );
        let storage = match (&*self.storage(), &*bias.storage()) {
            (Storage::Cpu(x), Storage::Cpu(b)) => Storage::Cpu(cpu::forward(x, b)),
            (Storage::Gpu(x), Storage::Gpu(b)) => Storage::Gpu(gpu::forward(x, b)?),
            (Storage::Meta(x), Storage::Meta(_)) => Storage::Meta(x.like("bias_gelu")),
            _ => return Err(crate::storage::mixed_devices("bias_gelu")),
        };
        Ok(Tensor::from_op(
            storage,
            self.shape().clone(),
            self.device().clone(),
            BiasGeluBackward,
            vec![self.clone(), bias.clone()],
        ))
    }
}

/// d/dz of gelu(z), z = x + bias recomputed from the saved x and bias (keeping z instead
/// would hold as much memory, and cost the forward a second output).
struct BiasGeluBackward;

impl BackwardOp for BiasGeluBackward {
    fn name(&self) -> &'static str {
        "bias_gelu"
    }
    fn saves_output(&self) -> bool {
        false
    }
    fn reads_f16(&self, index: usize) -> bool {
        index == 0
    }
    fn backward(
        &self,
        inputs: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let (x, bias) = (&inputs[0], &inputs[1]);
        let dz = match (&*x.storage(), &*bias.storage(), &*g.storage()) {
            (Storage::Cpu(x), Storage::Cpu(b), Storage::Cpu(g)) => {
                Storage::Cpu(cpu::backward(x, b, g))
            }
            (Storage::Gpu(x), Storage::Gpu(b), Storage::Gpu(g)) => {
                Storage::Gpu(gpu::backward(x, b, g)?)
            }
            (Storage::Meta(x), _, _) => Storage::Meta(x.output(x.len(), "bias_gelu_grad")),
            _ => return Err(crate::storage::mixed_devices("bias_gelu")),
        };
        let dz = Tensor::from_storage(dz, x.shape().clone(), x.device().clone());
        let dbias = bias
            .requires_grad()
            .then(|| dz.sum_to(bias.shape()))
            .transpose()?;
        Ok(vec![x.requires_grad().then_some(dz), dbias])
    }
}

pub(crate) fn gradcheck_cases() -> Vec<crate::gradcheck::Case> {
    use crate::gradcheck::Case;
    let shapes: [(&[usize], &[usize]); 4] = [
        (&[1], &[1]),
        (&[7], &[7]),
        (&[3, 5], &[5]),
        (&[2, 3, 7], &[7]),
    ];
    shapes
        .into_iter()
        .map(|(sx, sb)| Case::new("bias_gelu", &[sx, sb], |x| x[0].bias_gelu(&x[1])))
        .collect()
}
