//! Opt-in time per op family, for `clce-cli bench --profile`.
//!
//! A lap timer on the thread that drives the step, not a timer per kernel: every op ends in
//! [`Tensor::from_op`](crate::Tensor::from_op), which calls [`lap`] with the op's name, and
//! the time since the previous lap is charged to that op's [`Family`]. So what runs between
//! two ops (the op's own kernel, and the model code that prepared its inputs) goes to the op
//! that follows, and nothing needs a timer of its own. Recording the tape node is timed apart
//! and charged to [`Family::Tape`]. In the reverse pass each backward rule is charged as a
//! whole to the family of the op it differentiates, whatever ops it runs inside; the reverse
//! pass's own work (ordering the graph, adding up gradients) is [`Family::Tape`]. After the
//! outermost reverse pass, the rest of the step (gradient norm, optimiser) is the update
//! phase, charged to [`Family::Optimiser`].
//!
//! Off (the default) it costs one relaxed atomic load per op. On a GPU the laps time the host
//! (recording and submitting kernels); the device's time shows at the next read-back.
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How many threads are profiling (tests may run side by side).
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Where an op's time goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Matmul,
    /// Convolutions and pooling.
    Conv,
    Attention,
    /// LayerNorm, BatchNorm, L2 normalisation.
    Norm,
    /// Element-wise maps, reductions, softmax, dropout, casts.
    Elementwise,
    /// Copies that change layout: permute, concat, narrow, gather, broadcast.
    Layout,
    Loss,
    Optimiser,
    /// Recording the tape, ordering it and adding up gradients.
    Tape,
    /// Anything else: ops with no family, time after the last op of a phase.
    Other,
}

impl Family {
    pub const ALL: [Family; 10] = [
        Family::Matmul,
        Family::Conv,
        Family::Attention,
        Family::Norm,
        Family::Elementwise,
        Family::Layout,
        Family::Loss,
        Family::Optimiser,
        Family::Tape,
        Family::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Matmul => "matmul",
            Family::Conv => "conv",
            Family::Attention => "attention",
            Family::Norm => "norm",
            Family::Elementwise => "elementwise",
            Family::Layout => "layout",
            Family::Loss => "loss",
            Family::Optimiser => "optimiser",
            Family::Tape => "tape",
            Family::Other => "other",
        }
    }

    /// The family of the op that records itself on the tape as `op` (`BackwardOp::name`).
    pub fn of_op(op: &str) -> Family {
        match op {
            "matmul" => Family::Matmul,
            "conv2d" | "max_pool2d" | "avg_pool2d" => Family::Conv,
            "attention" => Family::Attention,
            "layer_norm" | "batch_norm" | "l2_normalize" => Family::Norm,
            "exp" | "log" | "sqrt" | "neg" | "relu" | "gelu" | "tanh" | "sigmoid" | "powf"
            | "add_scalar" | "mul_scalar" | "step" | "gelu_grad" | "add" | "sub" | "mul"
            | "div" | "sum" | "max" | "sum_to" | "softmax" | "log_softmax" | "dropout"
            | "drop_path" | "to_dtype" => Family::Elementwise,
            "reshape" | "permute" | "concat" | "narrow" | "index_select" | "gather"
            | "broadcast_to" => Family::Layout,
            "cross_entropy" | "lacln" | "supcon" | "hscl" => Family::Loss,
            _ => Family::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The parts of a training step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The model's forward pass and the objective.
    Forward,
    /// The reverse pass.
    Backward,
    /// What follows the reverse pass: gradient norm, clipping, the optimiser.
    Update,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Forward, Phase::Backward, Phase::Update];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Forward => "forward",
            Phase::Backward => "backward",
            Phase::Update => "update",
        }
    }
}

/// Seconds per phase and family, and per phase and op (the name an op records on the tape,
/// or `tape` / `other` / `optimiser` for time that is no op's).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    seconds: [[f64; Family::ALL.len()]; Phase::ALL.len()],
    ops: HashMap<(Phase, &'static str), f64>,
}

impl Profile {
    pub fn get(&self, phase: Phase, family: Family) -> f64 {
        self.seconds[phase as usize][family.index()]
    }

    pub fn phase_total(&self, phase: Phase) -> f64 {
        self.seconds[phase as usize].iter().sum()
    }

    pub fn total(&self) -> f64 {
        Phase::ALL.iter().map(|&p| self.phase_total(p)).sum()
    }

    /// Adds `other` to this one (summing steps).
    pub fn add(&mut self, other: &Profile) {
        for (row, o) in self.seconds.iter_mut().zip(&other.seconds) {
            for (s, x) in row.iter_mut().zip(o) {
                *s += x;
            }
        }
        for (key, x) in &other.ops {
            *self.ops.entry(*key).or_default() += x;
        }
    }

    /// (phase, op, seconds), the most expensive first.
    pub fn ops(&self) -> Vec<(Phase, &'static str, f64)> {
        let mut ops: Vec<_> = self.ops.iter().map(|(&(p, op), &s)| (p, op, s)).collect();
        ops.sort_by(|a, b| b.2.total_cmp(&a.2));
        ops
    }

    /// This profile with every figure multiplied by `factor` (a mean over steps).
    pub fn scaled(&self, factor: f64) -> Profile {
        let mut out = self.clone();
        out.seconds.iter_mut().flatten().for_each(|s| *s *= factor);
        out.ops.values_mut().for_each(|s| *s *= factor);
        out
    }
}

struct Recorder {
    last: Instant,
    phase: Phase,
    /// Charged instead of the op's own family and name while a backward rule (or the
    /// reverse pass's bookkeeping, or the update phase) runs.
    context: Option<Charge>,
    /// Nesting depth of reverse passes (activation checkpointing replays nest one).
    backward_depth: usize,
    times: [[Duration; Family::ALL.len()]; Phase::ALL.len()],
    ops: HashMap<(Phase, &'static str), Duration>,
}

/// Who pays for a stretch of time: a family, and the op (or activity) within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Charge {
    pub family: Family,
    pub name: &'static str,
}

impl Charge {
    pub(crate) fn op(name: &'static str) -> Charge {
        Charge {
            family: Family::of_op(name),
            name,
        }
    }

    pub(crate) const TAPE: Charge = Charge {
        family: Family::Tape,
        name: "tape",
    };
    const OTHER: Charge = Charge {
        family: Family::Other,
        name: "other",
    };
    const OPTIMISER: Charge = Charge {
        family: Family::Optimiser,
        name: "optimiser",
    };
}

thread_local! {
    static RECORDER: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

fn enabled() -> bool {
    ACTIVE.load(Ordering::Relaxed) != 0
}

fn with(f: impl FnOnce(&mut Recorder)) {
    if !enabled() {
        return;
    }
    RECORDER.with(|r| {
        if let Some(rec) = r.borrow_mut().as_mut() {
            f(rec)
        }
    });
}

impl Recorder {
    fn charge(&mut self, charge: Charge) {
        let now = Instant::now();
        let Charge { family, name } = self.context.unwrap_or(charge);
        let spent = now - self.last;
        self.times[self.phase as usize][family.index()] += spent;
        *self.ops.entry((self.phase, name)).or_default() += spent;
        self.last = now;
    }
}

/// Starts profiling on this thread, in the forward phase, from now. Ops on other threads are
/// not recorded (their time is inside the op that this thread is waiting for).
pub fn start() {
    RECORDER.with(|r| {
        let previous = r.borrow_mut().replace(Recorder {
            last: Instant::now(),
            phase: Phase::Forward,
            context: None,
            backward_depth: 0,
            times: Default::default(),
            ops: HashMap::new(),
        });
        if previous.is_none() {
            ACTIVE.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// Stops profiling and returns what this thread recorded since [`start`]; the time since the
/// last op goes to [`Family::Other`] of the phase it was in.
pub fn stop() -> Profile {
    with(|rec| rec.charge(Charge::OTHER));
    let rec = RECORDER.with(|r| r.borrow_mut().take());
    if rec.is_some() {
        ACTIVE.fetch_sub(1, Ordering::Relaxed);
    }
    let mut out = Profile::default();
    if let Some(rec) = rec {
        for (row, times) in out.seconds.iter_mut().zip(&rec.times) {
            for (s, t) in row.iter_mut().zip(times) {
                *s = t.as_secs_f64();
            }
        }
        out.ops = rec.ops.iter().map(|(&k, t)| (k, t.as_secs_f64())).collect();
    }
    out
}

/// An op named `op` has computed its output: the time since the last lap is its.
pub(crate) fn lap(op: &'static str) {
    with(|rec| rec.charge(Charge::op(op)));
}

/// Charges the time since the last lap to `charge` (the tape's own work, a rule's tail).
pub(crate) fn lap_as(charge: Charge) {
    with(|rec| rec.charge(charge));
}

/// Restores the charging context it replaced when dropped.
pub(crate) struct ContextGuard(Option<Option<Charge>>);

impl Drop for ContextGuard {
    fn drop(&mut self) {
        if let Some(previous) = self.0 {
            with(|rec| rec.context = previous);
        }
    }
}

/// Until the guard drops, charges every lap to `charge` (None: to each op itself).
pub(crate) fn context(charge: Option<Charge>) -> ContextGuard {
    let mut previous = None;
    with(|rec| previous = Some(std::mem::replace(&mut rec.context, charge)));
    ContextGuard(previous)
}

/// Marks a reverse pass until dropped; the outermost one moves the profile to the update
/// phase when it ends.
pub(crate) struct BackwardGuard(bool);

pub(crate) fn enter_backward() -> BackwardGuard {
    let mut on = false;
    with(|rec| {
        if rec.backward_depth == 0 {
            rec.charge(Charge::OTHER);
            rec.phase = Phase::Backward;
            rec.context = Some(Charge::TAPE);
        }
        rec.backward_depth += 1;
        on = true;
    });
    BackwardGuard(on)
}

impl Drop for BackwardGuard {
    fn drop(&mut self) {
        if !self.0 {
            return;
        }
        with(|rec| {
            rec.backward_depth -= 1;
            if rec.backward_depth == 0 {
                rec.charge(Charge::TAPE);
                rec.phase = Phase::Update;
                rec.context = Some(Charge::OPTIMISER);
            }
        });
    }
}

#[cfg(test)]
mod tests;
