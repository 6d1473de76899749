//! What a GPU device did, counted as it happens: the figures that decide how fast a training
//! step can run on a real GPU, whatever the speed of the machine that counts them (lavapipe
//! counts exactly what an H100 would run). Each counter is one relaxed atomic add at a place
//! that already costs far more (a driver call or a command record).
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A snapshot of a device's counters since it was opened; subtract two snapshots
/// ([`GpuCounters::since`]) for what happened in between.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuCounters {
    /// Compute passes recorded (one kernel launch each).
    pub dispatches: u64,
    /// Command buffers handed to the queue.
    pub submissions: u64,
    /// Blocking reads of a buffer back to the host (copy, submit, map, wait).
    pub readbacks: u64,
    /// Storage buffers created because the pool had none of the size class (pool misses).
    /// Readback staging buffers and the per-launch uniform blocks are not counted here.
    pub buffer_creations: u64,
    /// Tensor data sent to the GPU (uploads of values and index lists; not the uniform
    /// parameter blocks of launches, at most a few dozen bytes each).
    pub bytes_uploaded: u64,
    /// Bytes read back.
    pub bytes_downloaded: u64,
}

impl GpuCounters {
    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &GpuCounters) -> GpuCounters {
        GpuCounters {
            dispatches: self.dispatches - earlier.dispatches,
            submissions: self.submissions - earlier.submissions,
            readbacks: self.readbacks - earlier.readbacks,
            buffer_creations: self.buffer_creations - earlier.buffer_creations,
            bytes_uploaded: self.bytes_uploaded - earlier.bytes_uploaded,
            bytes_downloaded: self.bytes_downloaded - earlier.bytes_downloaded,
        }
    }

    /// Bytes moved either way.
    pub fn transfer_bytes(&self) -> u64 {
        self.bytes_uploaded + self.bytes_downloaded
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    dispatches: AtomicU64,
    submissions: AtomicU64,
    readbacks: AtomicU64,
    buffer_creations: AtomicU64,
    bytes_uploaded: AtomicU64,
    bytes_downloaded: AtomicU64,
    /// Dispatches by kernel ("file:entry"), to see where they come from.
    by_kernel: Mutex<HashMap<(&'static str, &'static str), u64>>,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn dispatch(&self, shader: &'static str, entry: &'static str) {
        bump(&self.dispatches, 1);
        *self
            .by_kernel
            .lock()
            .unwrap()
            .entry((shader, entry))
            .or_default() += 1;
    }

    pub(crate) fn by_kernel(&self) -> DispatchesByKernel {
        DispatchesByKernel(
            self.by_kernel
                .lock()
                .unwrap()
                .iter()
                .map(|(&(shader, entry), &n)| (format!("{shader}:{entry}"), n))
                .collect(),
        )
    }
    pub(crate) fn submission(&self) {
        bump(&self.submissions, 1);
    }
    pub(crate) fn readback(&self, bytes: u64) {
        bump(&self.readbacks, 1);
        bump(&self.bytes_downloaded, bytes);
    }
    pub(crate) fn buffer_creation(&self) {
        bump(&self.buffer_creations, 1);
    }
    pub(crate) fn upload(&self, bytes: u64) {
        bump(&self.bytes_uploaded, bytes);
    }

    pub(crate) fn snapshot(&self) -> GpuCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GpuCounters {
            dispatches: get(&self.dispatches),
            submissions: get(&self.submissions),
            readbacks: get(&self.readbacks),
            buffer_creations: get(&self.buffer_creations),
            bytes_uploaded: get(&self.bytes_uploaded),
            bytes_downloaded: get(&self.bytes_downloaded),
        }
    }
}

/// Dispatches so far by kernel, named "file:entry".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DispatchesByKernel(pub HashMap<String, u64>);

impl DispatchesByKernel {
    /// The kernels dispatched between `earlier` and this snapshot, most dispatched first.
    pub fn since(&self, earlier: &DispatchesByKernel) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .0
            .iter()
            .map(|(k, &n)| (k.clone(), n - earlier.0.get(k).copied().unwrap_or(0)))
            .filter(|&(_, n)| n > 0)
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }
}
