//! Devices a tensor can live on. The GPU backend adds `Device::Gpu`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
}

impl Device {
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
        }
    }
}
