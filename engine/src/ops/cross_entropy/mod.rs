//! Cross-entropy of [M, C] logits against integer labels, averaged over the M rows, with
//! PyTorch's label smoothing: the target puts 1 - e on the label and e spread evenly over all
//! C classes, so loss_i = (1 - e) * (-log p_{i,y_i}) + e * mean_c(-log p_{ic}).
//! One fused op: a stable log-softmax forward that keeps the probabilities, and the backward
//! (p - target) / M.
mod cpu;
mod gpu;
#[cfg(test)]
mod tests;

use crate::autograd::BackwardOp;
use crate::gpu::Indices;
use crate::{ensure_shape, Error, Result, Shape, Storage, Tensor};

impl Tensor {
    /// Mean cross-entropy of these [M, C] logits for `labels` (M class indices in 0..C),
    /// as torch.nn.functional.cross_entropy(logits, labels, label_smoothing=...). Returns a
    /// scalar (shape []).
    pub fn cross_entropy(&self, labels: &[usize], label_smoothing: f64) -> Result<Tensor> {
        ensure_shape!(
            self.rank() == 2,
            "cross_entropy",
            "expects [M, C] logits, got {:?}",
            self.shape()
        );
        let (m, c) = (self.dims()[0], self.dims()[1]);
        ensure_shape!(
            labels.len() == m,
            "cross_entropy",
            "{} labels for {m} rows of logits",
            labels.len()
        );
        ensure_shape!(m > 0, "cross_entropy", "no rows to average over");
        if let Some(&bad) = labels.iter().find(|&&y| y >= c) {
            return Err(Error::invalid(
                "cross_entropy",
                format!("label {bad} is out of range for {c} classes"),
            ));
        }
        if !(0.0..=1.0).contains(&label_smoothing) {
            return Err(Error::invalid(
                "cross_entropy",
                format!("label_smoothing {label_smoothing} is outside [0, 1]"),
            ));
        }
        let (loss, probs, saved_labels) = match &*self.storage() {
            Storage::Cpu(s) => {
                let (loss, probs) = cpu::forward(s, labels, label_smoothing);
                let labels = Indices::Host(labels.to_vec());
                (Storage::Cpu(loss), Storage::Cpu(probs), labels)
            }
            Storage::Gpu(s) => {
                let (loss, probs, labels) = gpu::forward(s, labels, label_smoothing)?;
                (
                    Storage::Gpu(loss),
                    Storage::Gpu(probs),
                    Indices::Gpu(labels),
                )
            }
            Storage::Meta(s) => (
                Storage::Meta(s.output(1, "cross_entropy")),
                Storage::Meta(s.like("cross_entropy")),
                Indices::Host(Vec::new()),
            ),
        };
        let device = self.device().clone();
        let backward = CrossEntropyBackward {
            probs: Tensor::from_storage(probs, self.shape().clone(), device.clone()),
            labels: saved_labels,
            label_smoothing,
        };
        Ok(Tensor::from_op(
            loss,
            Shape::scalar(),
            device,
            backward,
            vec![self.clone()],
        ))
    }
}

struct CrossEntropyBackward {
    /// softmax(logits), [M, C].
    probs: Tensor,
    labels: Indices,
    label_smoothing: f64,
}

impl BackwardOp for CrossEntropyBackward {
    fn name(&self) -> &'static str {
        "cross_entropy"
    }
    /// The probabilities it keeps are all it reads.
    fn saves_input(&self, _index: usize) -> bool {
        false
    }
    fn saves_output(&self) -> bool {
        false
    }
    fn backward(
        &self,
        _inputs: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let m = self.probs.dims()[0];
        let storage = match (&*self.probs.storage(), &*g.storage(), &self.labels) {
            (Storage::Cpu(p), Storage::Cpu(g), Indices::Host(labels)) => {
                Storage::Cpu(cpu::backward(p, g, labels, self.label_smoothing))
            }
            (Storage::Gpu(p), Storage::Gpu(g), Indices::Gpu(labels)) => {
                Storage::Gpu(gpu::backward(p, g, labels, m, self.label_smoothing)?)
            }
            (Storage::Meta(p), Storage::Meta(_), _) => {
                Storage::Meta(p.like("cross_entropy backward"))
            }
            _ => return Err(crate::storage::mixed_devices("cross_entropy")),
        };
        Ok(vec![Some(Tensor::from_storage(
            storage,
            self.probs.shape().clone(),
            self.probs.device().clone(),
        ))])
    }
}

pub(crate) fn gradcheck_cases() -> Vec<crate::gradcheck::Case> {
    use crate::gradcheck::Case;
    vec![
        Case::new("cross_entropy", &[&[1, 1]], |x| {
            x[0].cross_entropy(&[0], 0.0)
        }),
        Case::new("cross_entropy", &[&[3, 7]], |x| {
            x[0].cross_entropy(&[6, 0, 3], 0.0)
        }),
        Case::new("cross_entropy_smoothed", &[&[5, 3]], |x| {
            x[0].cross_entropy(&[2, 2, 0, 1, 0], 0.1)
        }),
        Case::new("cross_entropy_smoothed", &[&[2, 13]], |x| {
            x[0].cross_entropy(&[12, 5], 1.0)
        }),
    ]
}
