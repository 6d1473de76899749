//! `--micro-batch K`: the exact gradient of the whole batch's objective with the activation
//! memory of K views (gradient caching: Gao et al. 2021, "Scaling Deep Contrastive Learning
//! Batch Size under Memory Limited Setup").
//!
//! A contrastive objective couples every view with every other, so the batch cannot be split
//! into independent pieces the way gradient accumulation splits a cross-entropy batch. But
//! the objective reads the network only through each view's projection z and logits, and
//!
//!   dL/dθ = Σ_views (dL/dz_v · dz_v/dθ + dL/dlogits_v · dlogits_v/dθ).
//!
//! So a step runs in three passes:
//! 1. every chunk of K views forward without a tape, keeping only z and the logits
//!    (O(2B × (d + classes)) memory);
//! 2. the whole-batch objective on those outputs, and its gradient with respect to them;
//! 3. every chunk forward again with a tape, and backward seeded with the chunk's rows of
//!    that gradient, accumulating into the parameters' gradients; the chunk is then freed.
//!
//! Both forwards of a chunk must compute the same function: drop path draws each view's mask
//! from its place in the batch (`Mode::from_view`), so chunks see what the whole batch would.
//! BatchNorm normalises each chunk with the chunk's own statistics (as per-GPU BatchNorm does
//! in data-parallel training); its running statistics move once per step, towards the
//! chunks' statistics averaged by chunk size, and its counters advance once.
use clce_engine::{backward_with_grads, no_grad, Tensor};

use super::error::{Result, TrainError};
use super::network::{Output, RunningState};
use super::trainer::{scaled, StepCore};

/// Views `start..start + len` of the batch, for each chunk of at most `k` views.
fn chunks(views: usize, k: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..views)
        .step_by(k)
        .map(move |start| (start, k.min(views - start)))
}

/// The loss of the whole batch `x`, unread (its gradient, times `loss_scale` if given,
/// accumulated into the parameters' gradients), and the logits of every view, running at
/// most `k` views at a time.
pub fn forward_backward(
    step: &StepCore,
    k: usize,
    x: &Tensor,
    labels: &[usize],
    loss_scale: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let (cached, moved) = unrecorded_outputs(step, k, x)?;
    let grads = objective_gradients(step, &cached, labels, loss_scale)?;
    recorded_backward(step, k, x, &grads)?;
    moved.restore()?;
    Ok((grads.loss, cached.logits))
}

/// 1. Every chunk's outputs, unrecorded (detached), and the running state as the step leaves
///    it, to be put back after pass 3 with [`Moved::restore`].
pub(super) fn unrecorded_outputs(step: &StepCore, k: usize, x: &Tensor) -> Result<(Output, Moved)> {
    if k == 0 {
        return Err(TrainError::Invalid(
            "--micro-batch must be at least 1".into(),
        ));
    }
    let (net, mode) = (step.net, step.mode);
    let views = x.dims()[0];
    let mut running = RunningUpdate::start(net.running_state())?;
    let outputs = {
        let _no_tape = no_grad();
        let mut outputs = Vec::new();
        for (start, len) in chunks(views, k) {
            running.before_chunk()?;
            outputs.push(net.forward(&x.narrow(0, start, len)?, mode.from_view(start))?);
            running.after_chunk(len as f64 / views as f64)?;
        }
        outputs
    };
    let moved = running.finish()?;
    let whole = |part: fn(&Output) -> &Tensor| -> Result<Tensor> {
        let parts: Vec<Tensor> = outputs.iter().map(|o| part(o).clone()).collect();
        Ok(Tensor::concat(&parts, 0)?)
    };
    let cached = Output {
        pooled: whole(|o| &o.pooled)?,
        logits: whole(|o| &o.logits)?,
        projection: whole(|o| &o.projection)?,
    };
    Ok((cached, moved))
}

/// The objective's value and its gradient with respect to the views' projections and
/// logits (None where the objective does not read them).
pub(super) struct OutputGradients {
    pub loss: Tensor,
    pub projection: Option<Tensor>,
    pub logits: Option<Tensor>,
}

/// 2. The whole-batch objective on detached outputs, differentiated with respect to them
///    (times `loss_scale` if given: the scale enters once, here, and pass 3 seeds every chunk
///    with scaled output gradients).
pub(super) fn objective_gradients(
    step: &StepCore,
    outputs: &Output,
    labels: &[usize],
    loss_scale: Option<&Tensor>,
) -> Result<OutputGradients> {
    let leaves = Output {
        pooled: outputs.pooled.clone(),
        logits: outputs.logits.detach().set_requires_grad(true),
        projection: outputs.projection.detach().set_requires_grad(true),
    };
    // Not read here: the step guard checks it on the device (`trainer.rs`).
    let loss = (step.objective)(&leaves, labels)?;
    scaled(&loss, loss_scale)?.backward()?;
    Ok(OutputGradients {
        loss: loss.detach(),
        projection: leaves.projection.grad(),
        logits: leaves.logits.grad(),
    })
}

/// 3. Every chunk of `x` again, recorded, its backward seeded with the chunk's rows of
///    `grads` (whose rows are `x`'s views).
pub(super) fn recorded_backward(
    step: &StepCore,
    k: usize,
    x: &Tensor,
    grads: &OutputGradients,
) -> Result<()> {
    for (start, len) in chunks(x.dims()[0], k) {
        let out = step.recorded_forward(&x.narrow(0, start, len)?, step.mode.from_view(start))?;
        seed_backward(&out, grads, start, len)?;
    }
    Ok(())
}

/// Backward from `out`, the outputs of views `start..start + len` of `grads`' rows.
pub(super) fn seed_backward(
    out: &Output,
    grads: &OutputGradients,
    start: usize,
    len: usize,
) -> Result<()> {
    let mut seeds = Vec::new();
    for (root, grad) in [
        (&out.projection, &grads.projection),
        (&out.logits, &grads.logits),
    ] {
        if let Some(grad) = grad {
            seeds.push((root, grad.narrow(0, start, len)?));
        }
    }
    let seeds: Vec<(&Tensor, &Tensor)> = seeds.iter().map(|(r, g)| (*r, g)).collect();
    if !seeds.is_empty() {
        backward_with_grads(&seeds)?;
    }
    Ok(())
}

/// The running statistics' one update per step: each chunk of pass 1 starts from the values
/// before the step, and the step ends at the size-weighted mean of where the chunks took them
/// (with one chunk, exactly the unchunked update). Pass 3 moves them again; they are put back.
struct RunningUpdate {
    state: RunningState,
    before: Vec<Tensor>,
    counters_before: Vec<Tensor>,
    /// Σ over chunks of weight × the statistics after the chunk.
    sum: Vec<Option<Tensor>>,
}

/// The values of `tensors`, copied out of their storage.
fn copies(tensors: &[Tensor]) -> Result<Vec<Tensor>> {
    let _no_tape = no_grad();
    Ok(tensors
        .iter()
        .map(|t| t.mul_scalar(1.0))
        .collect::<clce_engine::Result<_>>()?)
}

fn assign_all(tensors: &[Tensor], values: &[Tensor]) -> Result<()> {
    for (t, v) in tensors.iter().zip(values) {
        t.assign(v)?;
    }
    Ok(())
}

impl RunningUpdate {
    fn start(state: RunningState) -> Result<RunningUpdate> {
        Ok(RunningUpdate {
            before: copies(&state.statistics)?,
            counters_before: copies(&state.counters)?,
            sum: vec![None; state.statistics.len()],
            state,
        })
    }

    fn before_chunk(&self) -> Result<()> {
        assign_all(&self.state.statistics, &self.before)?;
        assign_all(&self.state.counters, &self.counters_before)
    }

    fn after_chunk(&mut self, weight: f64) -> Result<()> {
        let _no_tape = no_grad();
        for (sum, t) in self.sum.iter_mut().zip(&self.state.statistics) {
            let part = t.mul_scalar(weight)?;
            *sum = Some(match sum.take() {
                Some(s) => s.add(&part)?,
                None => part,
            });
        }
        Ok(())
    }

    /// Sets the step's update; what to put back after pass 3.
    fn finish(self) -> Result<Moved> {
        for (t, sum) in self.state.statistics.iter().zip(self.sum) {
            if let Some(sum) = sum {
                t.assign(&sum)?;
            }
        }
        // The counters advanced once, in the last chunk (each chunk started from before).
        Ok(Moved {
            values: copies(&self.state.statistics)?,
            counters: copies(&self.state.counters)?,
            state: self.state,
        })
    }
}

/// The running state as the step leaves it.
pub(super) struct Moved {
    state: RunningState,
    values: Vec<Tensor>,
    counters: Vec<Tensor>,
}

impl Moved {
    pub(super) fn restore(&self) -> Result<()> {
        assign_all(&self.state.statistics, &self.values)?;
        assign_all(&self.state.counters, &self.counters)
    }
}
