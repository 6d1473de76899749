//! Batch normalisation (torch.nn.functional.batch_norm) of [N, C, H, W] or [N, C] inputs,
//! per channel. Training mode normalises with the batch's mean and biased variance and
//! moves the running statistics towards them in place (the variance unbiased, as PyTorch
//! does); eval mode normalises with the running statistics, an affine map of x.
mod cpu;
mod gpu;
#[cfg(test)]
mod tests;

use cpu::Layout;

use crate::autograd::{no_grad, BackwardOp};
use crate::{ensure_shape, Error, Result, Shape, Storage, Tensor};

impl Tensor {
    /// `weight`, `bias`, `running_mean` and `running_var` have shape [C]. With `training`,
    /// running = (1 - momentum) * running + momentum * batch statistic, written in place.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        training: bool,
        momentum: f64,
        eps: f64,
    ) -> Result<Tensor> {
        let l = layout(self)?;
        for p in [weight, bias, running_mean, running_var] {
            self.check_same("batch_norm", p)?;
            ensure_shape!(
                p.dims() == [l.c],
                "batch_norm",
                "weight, bias and running statistics must have shape [{}] for input {:?}, got {:?}",
                l.c,
                self.shape(),
                p.shape()
            );
        }
        if !(0.0..=1.0).contains(&momentum) {
            return Err(Error::invalid(
                "batch_norm",
                format!("momentum {momentum} is outside [0, 1]"),
            ));
        }
        if !(eps >= 0.0 && eps.is_finite()) {
            return Err(Error::invalid(
                "batch_norm",
                format!("eps {eps} must be >= 0"),
            ));
        }
        let count = l.n * l.s;
        if training && count < 2 {
            return Err(Error::invalid(
                "batch_norm",
                format!(
                    "training needs more than one value per channel, got input {:?}",
                    self.shape()
                ),
            ));
        }
        // Statistics only: no gradient flows through them here (backward has its own rule).
        let (mean, rstd) = {
            let _g = no_grad();
            let channels = |s| Tensor::from_storage(s, Shape::from([l.c]), self.device().clone());
            if training {
                let [mean, var] = match &*self.storage() {
                    Storage::Cpu(x) => cpu::batch_stats(x, l).map(Storage::Cpu),
                    Storage::Gpu(x) => gpu::batch_stats(x, l)?.map(Storage::Gpu),
                    Storage::Meta(x) => [x.output(l.c, "batch_norm"), x.output(l.c, "batch_norm")]
                        .map(Storage::Meta),
                };
                let (mean, var) = (channels(mean), channels(var));
                match running_on_gpu(&mean, &var, running_mean, running_var, l, momentum, eps)? {
                    Some([rstd, rm, rv]) => {
                        running_mean.assign(&channels(Storage::Gpu(rm)))?;
                        running_var.assign(&channels(Storage::Gpu(rv)))?;
                        (mean, channels(Storage::Gpu(rstd)))
                    }
                    None => {
                        let unbiased = var.mul_scalar(count as f64 / (count - 1) as f64)?;
                        running_mean.assign(&running_average(running_mean, &mean, momentum)?)?;
                        running_var.assign(&running_average(running_var, &unbiased, momentum)?)?;
                        (mean, var.add_scalar(eps)?.powf(-0.5)?)
                    }
                }
            } else {
                // Copies: the running statistics may be updated in place before backward runs.
                let (mean, var) = (running_mean.mul_scalar(1.0)?, running_var.clone());
                (mean, var.add_scalar(eps)?.powf(-0.5)?)
            }
        };
        self.batch_norm_with(weight, bias, mean, rstd, l, training)
    }

    /// y = (x - mean) * rstd * weight + bias per channel, recorded for backward.
    fn batch_norm_with(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        mean: Tensor,
        rstd: Tensor,
        l: Layout,
        training: bool,
    ) -> Result<Tensor> {
        let y = match (
            &*self.storage(),
            &*mean.storage(),
            &*rstd.storage(),
            &*weight.storage(),
            &*bias.storage(),
        ) {
            (
                Storage::Cpu(x),
                Storage::Cpu(m),
                Storage::Cpu(r),
                Storage::Cpu(w),
                Storage::Cpu(b),
            ) => Storage::Cpu(cpu::normalize(x, m, r, w, b, l)),
            (
                Storage::Gpu(x),
                Storage::Gpu(m),
                Storage::Gpu(r),
                Storage::Gpu(w),
                Storage::Gpu(b),
            ) => Storage::Gpu(gpu::normalize(x, [m, r, w, b], l)?),
            (Storage::Meta(x), ..) => Storage::Meta(x.like("batch_norm")),
            _ => return Err(crate::storage::mixed_devices("batch_norm")),
        };
        Ok(Tensor::from_op(
            y,
            self.shape().clone(),
            self.device().clone(),
            BatchNormBackward {
                mean,
                rstd,
                training,
            },
            vec![self.clone(), weight.clone(), bias.clone()],
        ))
    }
}

/// [N, C, S] of a [N, C] or [N, C, H, W] input.
fn layout(x: &Tensor) -> Result<Layout> {
    let d = x.dims();
    ensure_shape!(
        d.len() == 2 || d.len() == 4,
        "batch_norm",
        "expects [N, C] or [N, C, H, W], got {:?}",
        x.shape()
    );
    Ok(Layout {
        n: d[0],
        c: d[1],
        s: d[2..].iter().product(),
    })
}

/// On a GPU, [rstd, new running mean, new running variance] in one launch; the CPU and the
/// meta device compose them from elementwise ops (`None`).
fn running_on_gpu(
    mean: &Tensor,
    var: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    l: Layout,
    momentum: f64,
    eps: f64,
) -> Result<Option<[crate::gpu::GpuStorage; 3]>> {
    match (
        &*mean.storage(),
        &*var.storage(),
        &*running_mean.storage(),
        &*running_var.storage(),
    ) {
        (Storage::Gpu(m), Storage::Gpu(v), Storage::Gpu(rm), Storage::Gpu(rv)) => {
            gpu::running([m, v, rm, rv], l, momentum, eps).map(Some)
        }
        _ => Ok(None),
    }
}

/// (1 - momentum) * running + momentum * batch.
fn running_average(running: &Tensor, batch: &Tensor, momentum: f64) -> Result<Tensor> {
    running
        .mul_scalar(1.0 - momentum)?
        .add(&batch.mul_scalar(momentum)?)
}

struct BatchNormBackward {
    /// The per-channel mean and 1 / sqrt(var + eps) used: the batch's in training, the
    /// running statistics' in eval. Shape [C].
    mean: Tensor,
    rstd: Tensor,
    training: bool,
}

impl BackwardOp for BatchNormBackward {
    fn name(&self) -> &'static str {
        "batch_norm"
    }
    /// x and the weight, not the bias.
    fn saves_input(&self, index: usize) -> bool {
        index < 2
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
        let (x, weight) = (&inputs[0], &inputs[1]);
        let l = layout(x)?;
        let grads = match (
            &*x.storage(),
            &*g.storage(),
            &*self.mean.storage(),
            &*self.rstd.storage(),
            &*weight.storage(),
        ) {
            (
                Storage::Cpu(x),
                Storage::Cpu(g),
                Storage::Cpu(m),
                Storage::Cpu(r),
                Storage::Cpu(w),
            ) => cpu::backward(x, g, [m, r, w], l, self.training).map(Storage::Cpu),
            (
                Storage::Gpu(x),
                Storage::Gpu(g),
                Storage::Gpu(m),
                Storage::Gpu(r),
                Storage::Gpu(w),
            ) => gpu::backward(x, g, [m, r, w], l, self.training)?.map(Storage::Gpu),
            (Storage::Meta(x), ..) => [
                x.like("batch_norm backward"),
                x.output(l.c, "batch_norm backward"),
                x.output(l.c, "batch_norm backward"),
            ]
            .map(Storage::Meta),
            _ => return Err(crate::storage::mixed_devices("batch_norm")),
        };
        let shapes = [x.shape().clone(), Shape::from([l.c]), Shape::from([l.c])];
        Ok(grads
            .into_iter()
            .zip(shapes)
            .map(|(s, shape)| Some(Tensor::from_storage(s, shape, x.device().clone())))
            .collect())
    }
}

pub(crate) fn gradcheck_cases() -> Vec<crate::gradcheck::Case> {
    use crate::gradcheck::Case;
    // Fresh running statistics per call: training updates them in place.
    let run = |x: &[Tensor], training: bool| {
        let (c, dtype, device) = (x[0].dims()[1], x[0].dtype(), x[0].device());
        let rm = Tensor::randn([c], 0.5, 11, dtype, device)?;
        let rv = Tensor::rand_uniform([c], 0.5, 2.0, 12, dtype, device)?;
        x[0].batch_norm(&x[1], &x[2], &rm, &rv, training, 0.1, 1e-5)
    };
    let mut cases = Vec::new();
    for training in [true, false] {
        let name = if training {
            "batch_norm_train"
        } else {
            "batch_norm_eval"
        };
        cases.extend([
            Case::new(name, &[&[2, 3, 5, 1], &[3], &[3]], move |x| {
                run(x, training)
            }),
            Case::new(name, &[&[3, 2, 1, 3], &[2], &[2]], move |x| {
                run(x, training)
            }),
            Case::new(name, &[&[5, 3], &[3], &[3]], move |x| run(x, training)),
            Case::new(name, &[&[7, 1], &[1], &[1]], move |x| run(x, training)),
        ]);
    }
    cases
}
