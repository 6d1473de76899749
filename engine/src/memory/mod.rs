//! Memory accounting of tensor storage on every device, and the shape-only device that plans
//! a step's memory without running it.
//!
//! - CPU: every tensor's host storage is counted when it is created and when its last holder
//!   lets go ([`StorageCell`]), in process-wide counters (`Device::Cpu.memory_stats()`).
//! - GPU: the buffer pool counts live and pooled buffers per device (`gpu/pool.rs`).
//! - Meta ([`meta`]): tensors with a shape and no values, whose allocations are counted the way
//!   the CPU or a GPU's pool would count them; `clce-cli plan` runs a real training step on it.
pub mod meta;

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use crate::{Storage, Tensor};

pub use crate::gpu::MemoryStats;

static CPU_LIVE: AtomicU64 = AtomicU64::new(0);
static CPU_PEAK: AtomicU64 = AtomicU64::new(0);

/// Live and peak bytes of CPU tensor storage in this process (pooled is always 0: freed host
/// memory goes back to the system allocator).
pub(crate) fn cpu_stats() -> MemoryStats {
    MemoryStats {
        live_bytes: CPU_LIVE.load(Ordering::Relaxed),
        peak_live_bytes: CPU_PEAK.load(Ordering::Relaxed),
        pooled_bytes: 0,
    }
}

pub(crate) fn cpu_reset_peak() {
    CPU_PEAK.store(CPU_LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

fn cpu_alloc(bytes: u64) {
    if bytes > 0 {
        let live = CPU_LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
        CPU_PEAK.fetch_max(live, Ordering::Relaxed);
    }
}

fn cpu_free(bytes: u64) {
    if bytes > 0 {
        CPU_LIVE.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// On the meta device, counts `t`'s storage as `category` from now on (elsewhere, nothing).
pub(crate) fn recount(t: &Tensor, category: meta::Category) {
    if let Storage::Meta(m) = &*t.storage() {
        m.mark(category);
    }
}

/// A tensor's storage, counted on the CPU while it lives (GPU buffers and meta allocations
/// count themselves). Reshaped views and detached copies share one cell, so shared storage is
/// counted once.
pub struct StorageCell {
    lock: RwLock<Storage>,
    cpu_bytes: u64,
}

impl StorageCell {
    pub(crate) fn new(storage: Storage) -> StorageCell {
        let cpu_bytes = match &storage {
            Storage::Cpu(s) => (s.len() * s.dtype().size_in_bytes()) as u64,
            _ => 0,
        };
        cpu_alloc(cpu_bytes);
        StorageCell {
            lock: RwLock::new(storage),
            cpu_bytes,
        }
    }
}

impl Deref for StorageCell {
    type Target = RwLock<Storage>;
    fn deref(&self) -> &RwLock<Storage> {
        &self.lock
    }
}

impl Drop for StorageCell {
    fn drop(&mut self) {
        cpu_free(self.cpu_bytes);
    }
}

#[cfg(test)]
mod tests;
