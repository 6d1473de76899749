//! wgpu reports errors out of band (by default it panics on them). Two mechanisms bring them
//! back as [`Error::Gpu`]:
//! - [`scoped`] wraps a call that can fail on the spot (allocating a buffer, compiling a
//!   pipeline, encoding a launch) in error scopes, so the error belongs to that call;
//! - an [`ErrorSink`] catches whatever escapes the scopes (errors at submission, a lost
//!   device) and the next [`ErrorSink::check`] returns it.
//!
//! An error found when a batch is submitted (or while recording into it) loses the whole
//! batch: tensors computed since the previous submission hold undefined values. Errors here
//! are out-of-memory conditions or bugs, so callers stop at the first `Err`; set
//! `CLCE_GPU_CHECK=1` to submit after every kernel and learn which one failed.
use std::sync::{Arc, Mutex};

use crate::{Error, Result};

fn describe(e: &wgpu::Error) -> String {
    let kind = match e {
        wgpu::Error::OutOfMemory { .. } => "out of GPU memory",
        wgpu::Error::Validation { .. } => "validation error",
        wgpu::Error::Internal { .. } => "internal error",
    };
    // The top-level description is often generic ("Validation Error"); the causes say what.
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Runs `f` inside validation, out-of-memory and internal error scopes; an error raised
/// during `f` becomes `Err(Error::Gpu("{what}: ..."))`.
pub(crate) fn scoped<T>(device: &wgpu::Device, what: &str, f: impl FnOnce() -> T) -> Result<T> {
    let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let value = f();
    // Scopes pop in reverse order of pushing.
    let errors = [validation.pop(), oom.pop(), internal.pop()].map(pollster::block_on);
    match errors.into_iter().flatten().next() {
        Some(e) => Err(Error::Gpu(format!("{what}: {}", describe(&e)))),
        None => Ok(value),
    }
}

/// Errors no scope caught, kept until the next check.
#[derive(Default)]
pub(crate) struct ErrorSink {
    pending: Mutex<Option<String>>,
    lost: Mutex<Option<String>>,
}

impl ErrorSink {
    pub(crate) fn install(device: &wgpu::Device) -> Arc<ErrorSink> {
        let sink = Arc::new(ErrorSink::default());
        let s = sink.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            s.pending
                .lock()
                .unwrap()
                .get_or_insert_with(|| describe(&e));
        }));
        let s = sink.clone();
        device.set_device_lost_callback(move |reason, msg| {
            *s.lost.lock().unwrap() = Some(format!("device lost ({reason:?}): {msg}"));
        });
        sink
    }

    /// Err with the first error raised since the last check; a lost device stays an error.
    pub(crate) fn check(&self, what: &str) -> Result<()> {
        if let Some(lost) = self.lost.lock().unwrap().clone() {
            return Err(Error::Gpu(format!("{what}: {lost}")));
        }
        match self.pending.lock().unwrap().take() {
            Some(e) => Err(Error::Gpu(format!("{what}: {e}"))),
            None => Ok(()),
        }
    }
}
