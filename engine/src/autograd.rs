//! Reverse-mode automatic differentiation.
//!
//! Every op that runs while gradients are recorded attaches a [`Node`] to its output: the
//! op's backward rule (a struct holding whatever the op saved) and its inputs. Those nodes,
//! reachable from the loss, are the tape. [`backward`] orders them (inputs before outputs),
//! walks them in reverse, and asks each rule for its inputs' gradients. Backward rules are
//! written with ordinary tensor ops, or with a dedicated backward kernel where composing
//! ops would be slow, so the same rule runs on every device.
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::{Error, Result, Tensor, TensorId};

/// The backward rule of one recorded op.
pub trait BackwardOp: Send + Sync {
    fn name(&self) -> &'static str;
    /// Given d(loss)/d(output), returns d(loss)/d(input) for each input, in order (None where
    /// an input gets no gradient). `output` is passed in rather than saved, so that a node
    /// never holds its own tensor.
    fn backward(
        &self,
        inputs: &[Tensor],
        output: &Tensor,
        grad_output: &Tensor,
    ) -> Result<Vec<Option<Tensor>>>;
}

pub struct Node {
    pub op: Box<dyn BackwardOp>,
    pub inputs: Vec<Tensor>,
}

impl Drop for Node {
    /// Frees the graph behind this node without recursion: dropping the last handle to a
    /// 10,000-op chain would otherwise nest one drop per op and overflow the stack. Inputs this
    /// node owns alone have their own nodes unhooked onto a work list instead.
    fn drop(&mut self) {
        let mut pending = std::mem::take(&mut self.inputs);
        while let Some(mut t) = pending.pop() {
            if let Some(inner) = Arc::get_mut(&mut t.0) {
                if let Some(mut node) = inner.node.take() {
                    pending.append(&mut node.inputs);
                }
            }
        }
    }
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Restores the previous recording state when dropped.
pub struct GradModeGuard(bool);

impl Drop for GradModeGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.0));
    }
}

fn set_grad_enabled(on: bool) -> GradModeGuard {
    GradModeGuard(GRAD_ENABLED.with(|g| g.replace(on)))
}

/// Ops run while the guard lives record nothing (`torch.no_grad()`).
pub fn no_grad() -> GradModeGuard {
    set_grad_enabled(false)
}

/// Ops run while the guard lives record again, even inside `no_grad`.
pub fn enable_grad() -> GradModeGuard {
    set_grad_enabled(true)
}

/// Nodes reachable from `root` that need a gradient, inputs before the ops that use them.
fn topological_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    // Iterative post-order DFS: deep networks would overflow a recursive one.
    let mut stack: Vec<(Tensor, bool)> = vec![(root.clone(), false)];
    while let Some((t, children_done)) = stack.pop() {
        if children_done {
            order.push(t);
            continue;
        }
        if !t.requires_grad() || !seen.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(node) = t.node() {
            for input in node.inputs.iter().rev() {
                if input.requires_grad() && !seen.contains(&input.id()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order
}

/// d(root)/d(leaf) for a scalar `root`, accumulated into every leaf that requires grad.
pub fn backward(root: &Tensor) -> Result<()> {
    if root.numel() != 1 {
        return Err(Error::Backward(format!(
            "backward() needs a scalar loss, got shape {:?}; reduce it (sum/mean) or call backward_with_grad",
            root.shape()
        )));
    }
    let seed = root.ones_like()?;
    backward_with_grad(root, &seed)
}

/// Reverse pass from any tensor, given d(loss)/d(root).
pub fn backward_with_grad(root: &Tensor, grad_root: &Tensor) -> Result<()> {
    if !root.requires_grad() {
        return Err(Error::Backward(
            "the tensor does not require grad: no input of its graph was created with set_requires_grad(true), or it was computed under no_grad".into(),
        ));
    }
    if root.shape() != grad_root.shape() {
        return Err(Error::Backward(format!(
            "gradient shape {:?} differs from tensor shape {:?}",
            grad_root.shape(),
            root.shape()
        )));
    }
    let _guard = no_grad();
    let order = topological_order(root);
    let mut grads: HashMap<TensorId, Tensor> = HashMap::new();
    grads.insert(root.id(), grad_root.clone());
    for t in order.iter().rev() {
        // Removing frees each gradient as soon as it has been passed on.
        let Some(grad) = grads.remove(&t.id()) else {
            continue;
        };
        let Some(node) = t.node() else {
            let total = match t.grad() {
                Some(prev) => prev.add(&grad)?,
                None => grad,
            };
            t.set_grad(Some(total));
            continue;
        };
        let input_grads = node.op.backward(&node.inputs, t, &grad)?;
        if input_grads.len() != node.inputs.len() {
            return Err(Error::Backward(format!(
                "{} returned {} gradients for {} inputs",
                node.op.name(),
                input_grads.len(),
                node.inputs.len()
            )));
        }
        for (input, g) in node.inputs.iter().zip(input_grads) {
            let Some(g) = g else { continue };
            if !input.requires_grad() {
                continue;
            }
            if g.shape() != input.shape() {
                return Err(Error::Backward(format!(
                    "{} produced a gradient of shape {:?} for an input of shape {:?}",
                    node.op.name(),
                    g.shape(),
                    input.shape()
                )));
            }
            let total = match grads.remove(&input.id()) {
                Some(prev) => prev.add(&g)?,
                None => g,
            };
            grads.insert(input.id(), total);
        }
    }
    Ok(())
}

/// A block whose activations are not kept: the forward runs without recording, and the
/// backward pass runs `f` again with recording on and differentiates that (activation
/// checkpointing). `params` are the trainable tensors `f` uses; their gradients are
/// accumulated during the recomputation. `f` must be deterministic (seeded dropout is).
pub type BlockFn = Arc<dyn Fn(&[Tensor]) -> Result<Tensor> + Send + Sync>;

pub fn checkpoint(inputs: &[Tensor], params: &[Tensor], f: BlockFn) -> Result<Tensor> {
    let out = {
        let _g = no_grad();
        f(inputs)?
    };
    let mut all = inputs.to_vec();
    all.extend_from_slice(params);
    let storage = out.storage().clone();
    Ok(Tensor::from_op(
        storage,
        out.shape().clone(),
        out.device().clone(),
        CheckpointBackward {
            f,
            n_inputs: inputs.len(),
        },
        all,
    ))
}

struct CheckpointBackward {
    f: BlockFn,
    n_inputs: usize,
}

impl BackwardOp for CheckpointBackward {
    fn name(&self) -> &'static str {
        "checkpoint"
    }
    fn backward(
        &self,
        inputs: &[Tensor],
        _output: &Tensor,
        grad_output: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let _g = enable_grad();
        let replay: Vec<Tensor> = inputs[..self.n_inputs]
            .iter()
            .map(|t| t.detach().set_requires_grad(t.requires_grad()))
            .collect();
        let out = (self.f)(&replay)?;
        if out.requires_grad() {
            backward_with_grad(&out, grad_output)?;
        }
        let mut grads: Vec<Option<Tensor>> = replay.iter().map(|t| t.grad()).collect();
        // The replayed inputs are leaves only for the replay: their gradients flow on.
        for g in grads.iter().flatten() {
            crate::memory::recount(g, crate::memory::meta::Category::Activations);
        }
        // Parameter gradients were accumulated into the parameters during the replay.
        grads.extend(std::iter::repeat_n(None, inputs.len() - self.n_inputs));
        Ok(grads)
    }
}

#[cfg(test)]
mod tests;
