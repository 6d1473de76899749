//! Devices a tensor can live on: the CPU, or a GPU opened through wgpu.
use crate::gpu::{self, GpuDevice, MemoryStats};
use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Gpu(GpuDevice),
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

    /// Buffer memory held on a GPU (None on the CPU).
    pub fn memory_stats(&self) -> Option<MemoryStats> {
        match self {
            Device::Cpu => None,
            Device::Gpu(g) => Some(g.memory_stats()),
        }
    }

    /// Waits until all work queued on this device has finished (for timing; reads of values
    /// wait by themselves).
    pub fn synchronize(&self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Gpu(g) => g.synchronize(),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Gpu(g) => write!(f, "{g}"),
        }
    }
}
