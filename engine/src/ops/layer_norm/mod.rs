//! Layer normalisation over the last dimension (torch.nn.functional.layer_norm): each row is
//! shifted to mean 0 and scaled to variance 1 (biased variance, plus eps), then optionally
//! scaled by `weight` and shifted by `bias`. The backward kernel gets dx, dweight and dbias
//! in one pass over the rows, reusing the mean and 1/std saved by the forward.
mod cpu;
mod gpu;
#[cfg(test)]
mod tests;

use crate::autograd::BackwardOp;
use crate::gpu::GpuStorage;
use crate::{ensure_shape, CpuStorage, Error, Result, Shape, Storage, Tensor};

impl Tensor {
    /// Normalises over the last dimension; `weight` and `bias` have that dimension's size.
    pub fn layer_norm(
        &self,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        ensure_shape!(
            self.rank() >= 1,
            "layer_norm",
            "needs at least one dimension"
        );
        if !(eps >= 0.0 && eps.is_finite()) {
            return Err(Error::invalid(
                "layer_norm",
                format!("eps {eps} must be >= 0"),
            ));
        }
        let d = self.dims()[self.rank() - 1];
        for p in weight.iter().chain(bias.iter()) {
            self.check_same("layer_norm", p)?;
            ensure_shape!(
                p.dims() == [d],
                "layer_norm",
                "weight and bias must have shape [{d}] for input {:?}, got {:?}",
                self.shape(),
                p.shape()
            );
        }
        let rows = Shape::from([self.numel() / d.max(1)]);
        let (ws, bs) = (weight.map(|w| w.storage()), bias.map(|b| b.storage()));
        let [y, mean, rstd] = match &*self.storage() {
            Storage::Cpu(x) => {
                let (w, b) = (cpu_part(ws.as_deref())?, cpu_part(bs.as_deref())?);
                cpu::forward(x, w, b, d, eps).map(Storage::Cpu)
            }
            Storage::Gpu(x) => {
                let (w, b) = (gpu_part(ws.as_deref())?, gpu_part(bs.as_deref())?);
                gpu::forward(x, w, b, d, eps)?.map(Storage::Gpu)
            }
            Storage::Meta(x) => {
                let rows = x.len() / d.max(1);
                [
                    x.like("layer_norm"),
                    x.output(rows, "layer_norm"),
                    x.output(rows, "layer_norm"),
                ]
                .map(Storage::Meta)
            }
        };
        drop((ws, bs));
        let device = self.device().clone();
        let backward = LayerNormBackward {
            mean: Tensor::from_storage(mean, rows.clone(), device.clone()),
            rstd: Tensor::from_storage(rstd, rows, device.clone()),
            has_weight: weight.is_some(),
            has_bias: bias.is_some(),
        };
        let mut inputs = vec![self.clone()];
        inputs.extend(weight.cloned());
        inputs.extend(bias.cloned());
        Ok(Tensor::from_op(
            y,
            self.shape().clone(),
            device,
            backward,
            inputs,
        ))
    }
}

/// The CPU storage of an optional operand that `check_same` put on the same device as x.
fn cpu_part(s: Option<&Storage>) -> Result<Option<&CpuStorage>> {
    s.map(|s| match s {
        Storage::Cpu(s) => Ok(s),
        _ => Err(crate::storage::mixed_devices("layer_norm")),
    })
    .transpose()
}

/// The GPU storage of an optional operand (see `cpu_part`).
fn gpu_part(s: Option<&Storage>) -> Result<Option<&GpuStorage>> {
    s.map(|s| match s {
        Storage::Gpu(s) => Ok(s),
        _ => Err(crate::storage::mixed_devices("layer_norm")),
    })
    .transpose()
}

struct LayerNormBackward {
    /// Per-row mean and 1 / sqrt(var + eps), shape [rows].
    mean: Tensor,
    rstd: Tensor,
    has_weight: bool,
    has_bias: bool,
}

impl BackwardOp for LayerNormBackward {
    fn name(&self) -> &'static str {
        "layer_norm"
    }
    /// x and the weight; the bias's gradient needs only the output gradient.
    fn saves_input(&self, index: usize) -> bool {
        index == 0 || (index == 1 && self.has_weight)
    }
    fn keeps_f32(&self, index: usize) -> bool {
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
        let x = &inputs[0];
        let weight = self.has_weight.then(|| &inputs[1]);
        let d = x.dims()[x.rank() - 1];
        let ws = weight.map(|w| w.storage());
        let [dx, dweight, dbias] = match (
            &*x.storage(),
            &*g.storage(),
            &*self.mean.storage(),
            &*self.rstd.storage(),
        ) {
            (Storage::Cpu(x), Storage::Cpu(g), Storage::Cpu(m), Storage::Cpu(r)) => {
                cpu::backward(x, cpu_part(ws.as_deref())?, g, m, r, d).map(Storage::Cpu)
            }
            (Storage::Gpu(x), Storage::Gpu(g), Storage::Gpu(m), Storage::Gpu(r)) => {
                gpu::backward(x, gpu_part(ws.as_deref())?, g, m, r, d)?.map(Storage::Gpu)
            }
            (Storage::Meta(x), _, _, _) => [
                x.like("layer_norm backward"),
                x.output(d, "layer_norm backward"),
                x.output(d, "layer_norm backward"),
            ]
            .map(Storage::Meta),
            _ => return Err(crate::storage::mixed_devices("layer_norm")),
        };
        let device = x.device();
        let param = |s: Storage| Tensor::from_storage(s, Shape::from([d]), device.clone());
        let mut grads = vec![Some(Tensor::from_storage(
            dx,
            x.shape().clone(),
            device.clone(),
        ))];
        if self.has_weight {
            grads.push(Some(param(dweight)));
        }
        if self.has_bias {
            grads.push(Some(param(dbias)));
        }
        Ok(grads)
    }
}

pub(crate) fn gradcheck_cases() -> Vec<crate::gradcheck::Case> {
    use crate::gradcheck::Case;
    vec![
        Case::new("layer_norm", &[&[3, 7], &[7], &[7]], |x| {
            x[0].layer_norm(Some(&x[1]), Some(&x[2]), 1e-5)
        }),
        Case::new("layer_norm", &[&[2, 3, 5], &[5], &[5]], |x| {
            x[0].layer_norm(Some(&x[1]), Some(&x[2]), 1e-5)
        }),
        Case::new("layer_norm", &[&[1, 1], &[1], &[1]], |x| {
            x[0].layer_norm(Some(&x[1]), Some(&x[2]), 1e-5)
        }),
        Case::new("layer_norm_plain", &[&[5, 11]], |x| {
            x[0].layer_norm(None, None, 1e-5)
        }),
        Case::new("layer_norm_weight_only", &[&[3, 13], &[13]], |x| {
            x[0].layer_norm(Some(&x[1]), None, 0.1)
        }),
        Case::new("layer_norm_bias_only", &[&[2, 2, 3], &[3]], |x| {
            x[0].layer_norm(None, Some(&x[1]), 1e-5)
        }),
    ]
}
