//! Reverse-mode automatic differentiation.
//!
//! Every op that runs while gradients are recorded attaches a [`Node`] to its output: the
//! op's backward rule (a struct holding whatever the op saved) and its inputs. Those nodes,
//! reachable from the loss, are the tape. [`backward`] orders them (inputs before outputs),
//! walks them in reverse, and asks each rule for its inputs' gradients. Backward rules are
//! written with ordinary tensor ops, or with a dedicated backward kernel where composing
//! ops would be slow, so the same rule runs on every device.
//!
//! The tape is lean: a node holds in full only the inputs (and output) its rule reads
//! ([`BackwardOp::saves_input`], [`BackwardOp::saves_output`]) and a storage-less graph alias
//! of the rest, and the reverse pass frees what each node saved, and each gradient, as soon
//! as they have been used. So memory falls while backward proceeds, and a graph is
//! differentiated once: a second pass is an error that asks for the forward to be rerun.
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::memory::StorageCell;
use crate::profile::{self, Charge};
use crate::{DType, Error, Result, Tensor, TensorId};
use half_saved::HalfCopy;

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
    /// Whether `backward` reads the values of input `index`. Where it does not, the node
    /// keeps only the input's graph alias (shape, dtype, device, requires_grad, its place in
    /// the graph), so the input's storage can be freed as soon as nothing else holds it.
    fn saves_input(&self, _index: usize) -> bool {
        true
    }
    /// Whether `backward` reads the values of `output`; where not, it gets the alias.
    fn saves_output(&self) -> bool {
        true
    }
    /// Whether input `index` is kept in f32 even under `--precision f16`: the norms' inputs,
    /// whose backward recomputes (x − mean) / std, where the f16 rounding of x (relative to
    /// |x|) becomes an error |mean| / std times larger in the normalised value; autocast runs
    /// the norms in f32 for the same reason.
    fn keeps_f32(&self, _index: usize) -> bool {
        false
    }
    /// Whether `backward` takes input `index` as an F16 tensor where the tape kept it in f16
    /// (`--precision f16`), instead of a widened f32 copy: the rule's kernels read f16 and
    /// accumulate in f32 (matmul, conv2d, attention, bias_gelu), so it needs no full-size f32
    /// copy of what it saved.
    fn reads_f16(&self, _index: usize) -> bool {
        false
    }
}

/// One recorded op on the tape. It is shared (`Arc`) by its output and that output's graph
/// aliases; what it saved is taken out, and freed, by the reverse pass once its rule has run.
pub struct Node {
    name: &'static str,
    saved: Mutex<Option<Saved>>,
}

/// What a node keeps until the reverse pass reaches it.
struct Saved {
    op: Box<dyn BackwardOp>,
    /// Each input in full where the rule reads its values, else its graph alias (also for
    /// an input kept in `half_inputs`).
    inputs: Vec<Tensor>,
    /// Inputs the rule reads, kept as f16 copies (`half_saved.rs`), by index.
    half_inputs: Vec<(usize, Arc<HalfCopy>)>,
    /// The output's storage, where the rule reads it.
    output: Option<SavedStorage>,
}

enum SavedStorage {
    Full(Arc<StorageCell>),
    Half(Arc<HalfCopy>),
}

/// `cell` as a node keeps it: as an f16 copy where `half_saved` says so for a tensor of
/// `dtype` and `numel` elements (and the copy could be made), else itself.
fn keep(cell: &Arc<StorageCell>, dtype: DType, numel: usize, may_narrow: bool) -> SavedStorage {
    if half_saved::wants_half(dtype, numel, may_narrow) {
        if let Ok(copy) = half_saved::half_copy(cell) {
            return SavedStorage::Half(copy);
        }
    }
    SavedStorage::Full(cell.clone())
}

impl Saved {
    /// The inputs and output storage as the rule reads them: f16 copies widened to f32, or
    /// as they are for an input the rule reads in f16 on a device whose kernels can.
    fn widened(&mut self) -> Result<Option<Arc<StorageCell>>> {
        for (i, copy) in std::mem::take(&mut self.half_inputs) {
            let input = &self.inputs[i];
            self.inputs[i] = if self.op.reads_f16(i) && half_saved::device_reads_f16(input.device())
            {
                input.with_half_storage(copy)
            } else {
                input.with_storage(Some(half_saved::widen(&copy)?))
            };
        }
        Ok(match self.output.take() {
            Some(SavedStorage::Full(cell)) => Some(cell),
            Some(SavedStorage::Half(copy)) => Some(half_saved::widen(&copy)?),
            None => None,
        })
    }
}

impl Node {
    pub(crate) fn new(
        op: Box<dyn BackwardOp>,
        inputs: Vec<Tensor>,
        output: &Arc<StorageCell>,
    ) -> Arc<Node> {
        let mut half_inputs = Vec::new();
        let inputs = inputs
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                if !op.saves_input(i) {
                    return t.graph_alias();
                }
                let may_narrow = !t.is_leaf() && !op.keeps_f32(i);
                match keep(t.values(), t.dtype(), t.numel(), may_narrow) {
                    SavedStorage::Half(copy) => {
                        half_inputs.push((i, copy));
                        t.graph_alias()
                    }
                    SavedStorage::Full(_) => t,
                }
            })
            .collect();
        let output = op.saves_output().then(|| {
            let (dtype, len) = {
                let storage = output.read().unwrap_or_else(|e| e.into_inner());
                (storage.dtype(), storage.len())
            };
            keep(output, dtype, len, true)
        });
        Arc::new(Node {
            name: op.name(),
            saved: Mutex::new(Some(Saved {
                op,
                inputs,
                half_inputs,
                output,
            })),
        })
    }

    /// The recorded op's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn lock(&self) -> MutexGuard<'_, Option<Saved>> {
        // A panicking rule poisons nothing that matters: the state is only ever replaced.
        self.saved.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The graph aliases of the node's inputs.
    fn inputs(&self) -> Result<Vec<Tensor>> {
        match &*self.lock() {
            Some(saved) => Ok(saved.inputs.iter().map(Tensor::graph_alias).collect()),
            None => Err(self.released()),
        }
    }

    /// Takes what the node saved out of it; dropping that frees it.
    fn release(&self) -> Result<Saved> {
        self.lock().take().ok_or_else(|| self.released())
    }

    fn released(&self) -> Error {
        Error::Backward(format!(
            "the graph was already used by a backward pass (its {} node has freed what it \
             saved); recompute the forward to differentiate again",
            self.name
        ))
    }
}

impl Drop for Node {
    /// Frees the graph behind this node without recursion: dropping the last handle to a
    /// 10,000-op chain would otherwise nest one drop per op and overflow the stack. Inputs this
    /// node owns alone have their own nodes unhooked onto a work list instead.
    fn drop(&mut self) {
        let take = |node: &mut Node| {
            node.saved
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .map(|s| s.inputs)
        };
        let mut pending = take(self).unwrap_or_default();
        while let Some(mut t) = pending.pop() {
            let Some(inner) = Arc::get_mut(&mut t.0) else {
                continue;
            };
            if let Some(mut node) = inner.node.take().and_then(Arc::into_inner) {
                pending.extend(take(&mut node).unwrap_or_default());
            }
        }
    }
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
    /// The backward rule running on this thread, named when it reads an unsaved tensor.
    static RUNNING_RULE: Cell<Option<&'static str>> = const { Cell::new(None) };
}

pub(crate) fn running_rule() -> Option<&'static str> {
    RUNNING_RULE.with(|r| r.get())
}

/// Names `rule` as running until dropped (restoring the outer one: checkpoint replays nest).
struct RuleGuard(Option<&'static str>);

impl RuleGuard {
    fn enter(rule: &'static str) -> Self {
        RuleGuard(RUNNING_RULE.with(|r| r.replace(Some(rule))))
    }
}

impl Drop for RuleGuard {
    fn drop(&mut self) {
        RUNNING_RULE.with(|r| r.set(self.0));
    }
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

/// Graph aliases of the tensors reachable from `roots` that need a gradient, inputs before
/// the ops that use them. An error if part of the graph was already differentiated.
fn topological_order(roots: &[&Tensor]) -> Result<Vec<Tensor>> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    // Iterative post-order DFS: deep networks would overflow a recursive one. Several roots
    // are visited one after the other; each root's post-order only adds tensors that the
    // earlier ones did not reach, so the concatenation is still inputs-first.
    let mut stack: Vec<(Tensor, bool)> = roots
        .iter()
        .rev()
        .map(|r| (r.graph_alias(), false))
        .collect();
    while let Some((t, children_done)) = stack.pop() {
        if children_done {
            order.push(t);
            continue;
        }
        if !t.requires_grad() || !seen.insert(t.id()) {
            continue;
        }
        let inputs = match t.node() {
            Some(node) => node.inputs()?,
            None => Vec::new(),
        };
        stack.push((t, true));
        for input in inputs.into_iter().rev() {
            if input.requires_grad() && !seen.contains(&input.id()) {
                stack.push((input, false));
            }
        }
    }
    Ok(order)
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
    backward_with_grads(&[(root, grad_root)])
}

/// One reverse pass from several tensors of one graph, each with its d(loss)/d(root): the
/// gradient of a loss that was computed from those tensors elsewhere (`--micro-batch` seeds a
/// chunk's projections and logits with the whole batch's output gradients).
pub fn backward_with_grads(roots: &[(&Tensor, &Tensor)]) -> Result<()> {
    for (root, grad_root) in roots {
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
    }
    let _guard = no_grad();
    let _profiled = profile::enter_backward();
    let order = topological_order(&roots.iter().map(|(r, _)| *r).collect::<Vec<_>>())?;
    let mut grads: HashMap<TensorId, Tensor> = HashMap::new();
    for (root, grad_root) in roots {
        let total = match grads.remove(&root.id()) {
            Some(prev) => prev.add(grad_root)?,
            None => (*grad_root).clone(),
        };
        grads.insert(root.id(), total);
    }
    // Every tensor in `order` is an alias: what stays alive is what the nodes not yet reached
    // saved, and the gradients not yet passed on.
    for t in order.iter().rev() {
        // Removing frees each gradient as soon as it has been passed on.
        let grad = grads.remove(&t.id());
        let Some(node) = t.node() else {
            if let Some(grad) = grad {
                let total = match t.grad() {
                    Some(prev) => prev.add(&grad)?,
                    None => grad,
                };
                t.set_grad(Some(total));
            }
            continue;
        };
        // Every use of t is behind us, so what the node saved is freed at the end of this
        // iteration (also when no gradient reached it).
        let mut saved = node.release()?;
        let Some(grad) = grad else { continue };
        let output = match saved.widened()? {
            Some(storage) => t.with_storage(Some(storage)),
            None => t.clone(),
        };
        let input_grads = {
            let _rule = RuleGuard::enter(node.name());
            // The tape's bookkeeping up to here, then the rule as a whole to its op's family
            // (a checkpoint's replay to the families of the ops it reruns).
            profile::lap_as(Charge::TAPE);
            let charge = (node.name() != "checkpoint").then(|| Charge::op(node.name()));
            let _charged = profile::context(charge);
            let grads = saved.op.backward(&saved.inputs, &output, &grad)?;
            profile::lap_as(charge.unwrap_or(Charge::op("checkpoint")));
            grads
        };
        if input_grads.len() != saved.inputs.len() {
            return Err(Error::Backward(format!(
                "{} returned {} gradients for {} inputs",
                node.name(),
                input_grads.len(),
                saved.inputs.len()
            )));
        }
        for (input, g) in saved.inputs.iter().zip(input_grads) {
            let Some(g) = g else { continue };
            if !input.requires_grad() {
                continue;
            }
            if g.shape() != input.shape() {
                return Err(Error::Backward(format!(
                    "{} produced a gradient of shape {:?} for an input of shape {:?}",
                    node.name(),
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
            saves_in_f16: half_saved::is_active(),
        },
        all,
    ))
}

struct CheckpointBackward {
    f: BlockFn,
    n_inputs: usize,
    /// Whether the forward pass kept its saved activations in f16: the replay does too.
    saves_in_f16: bool,
}

impl BackwardOp for CheckpointBackward {
    fn name(&self) -> &'static str {
        "checkpoint"
    }
    /// The block's inputs, to replay it; the parameters are reached through `f`.
    fn saves_input(&self, index: usize) -> bool {
        index < self.n_inputs
    }
    fn saves_output(&self) -> bool {
        false
    }
    fn backward(
        &self,
        inputs: &[Tensor],
        _output: &Tensor,
        grad_output: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let _g = enable_grad();
        let _f16 = self.saves_in_f16.then(half_saved::save_in_f16);
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

pub mod half_saved;
#[cfg(test)]
mod tests;
