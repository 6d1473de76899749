//! Deliberate faults, off unless something turns them on: the checks that must catch a wrong
//! backward rule (the gradient check before `clce-cli finetune`) are tested against a real
//! model with one planted.
use std::sync::atomic::{AtomicBool, Ordering};

static WRONG_RELU_BACKWARD: AtomicBool = AtomicBool::new(false);

/// Makes relu's backward rule scale its gradient by 1.5, process-wide (on every device, as a
/// wrong rule would).
pub fn set_wrong_relu_backward(on: bool) {
    WRONG_RELU_BACKWARD.store(on, Ordering::Relaxed);
}

pub(crate) fn wrong_relu_backward() -> bool {
    WRONG_RELU_BACKWARD.load(Ordering::Relaxed)
}
