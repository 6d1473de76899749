//! Devices a tensor can live on: the CPU, a GPU opened through wgpu, or the shape-only meta
//! device that plans memory.
use crate::gpu::{self, GpuCounters, GpuDevice};
use crate::memory::{self, meta::MetaDevice, MemoryStats};
use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Gpu(GpuDevice),
    /// Shapes without values, with every allocation counted (`clce-cli plan`).
    Meta(MetaDevice),
}

impl Device {
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }
    pub fn is_gpu(&self) -> bool {
        matches!(self, Device::Gpu(_))
    }

    /// GPU number `index` in the ranking of `clce-cli devices` (0 is the best adapter, and a
    /// software one such as lavapipe only when nothing else exists).
    pub fn gpu(index: usize) -> Result<Device> {
        Ok(Device::Gpu(GpuDevice::open(index)?))
    }

    /// The best hardware GPU, or an error saying why there is none. Software adapters
    /// (lavapipe) are never picked: the CPU backend is far faster than they are.
    pub fn try_auto() -> Result<Device> {
        match gpu::adapters().first() {
            Some(a) if !a.is_software => Device::gpu(a.index),
            Some(a) => Err(Error::Gpu(format!(
                "no hardware GPU adapter (only the software adapter {}; --device gpu uses it)",
                a.name
            ))),
            None => Err(Error::Gpu("no GPU adapter found".into())),
        }
    }

    /// The best hardware GPU if there is one, else the CPU.
    pub fn auto() -> Device {
        Device::try_auto().unwrap_or(Device::Cpu)
    }

    pub fn is_meta(&self) -> bool {
        matches!(self, Device::Meta(_))
    }

    /// Live and peak bytes of tensor storage (`torch.cuda.memory_allocated` and
    /// `max_memory_allocated`): on the CPU, every tensor of this process; on a GPU, its
    /// buffers, with the freed ones kept for reuse as `pooled_bytes`.
    pub fn memory_stats(&self) -> MemoryStats {
        match self {
            Device::Cpu => memory::cpu_stats(),
            Device::Gpu(g) => g.memory_stats(),
            Device::Meta(m) => m.memory_stats(),
        }
    }

    /// Starts a new peak from what is live now (`torch.cuda.reset_peak_memory_stats`).
    pub fn reset_peak_memory(&self) {
        match self {
            Device::Cpu => memory::cpu_reset_peak(),
            Device::Gpu(g) => g.reset_peak_memory(),
            Device::Meta(m) => m.reset_peak_memory(),
        }
    }

    /// What the GPU has done since it was opened (dispatches, submissions, readbacks, buffer
    /// creations, bytes moved); None on the CPU and the meta device.
    pub fn gpu_counters(&self) -> Option<GpuCounters> {
        match self {
            Device::Gpu(g) => Some(g.counters()),
            Device::Cpu | Device::Meta(_) => None,
        }
    }

    /// Ends a training step on a GPU: submits it and waits for the step before it, so that
    /// the host stays one step ahead at most (see `GpuDevice::end_step`). Nothing elsewhere.
    pub fn end_step(&self) -> Result<()> {
        match self {
            Device::Gpu(g) => g.end_step(),
            Device::Cpu | Device::Meta(_) => Ok(()),
        }
    }

    /// Waits until all work queued on this device has finished (for timing; reads of values
    /// wait by themselves).
    pub fn synchronize(&self) -> Result<()> {
        match self {
            Device::Cpu | Device::Meta(_) => Ok(()),
            Device::Gpu(g) => g.synchronize(),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Gpu(g) => write!(f, "{g}"),
            Device::Meta(m) => write!(f, "{m}"),
        }
    }
}
