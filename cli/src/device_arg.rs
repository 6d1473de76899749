//! `--device auto|cpu|gpu|gpu:N`, shared by every command (also read from CLCE_DEVICE).
//!
//! - `cpu`: the CPU backend.
//! - `gpu`: the best adapter of `clce-cli devices` (gpu:0); a software one such as lavapipe
//!   only when nothing else exists.
//! - `gpu:N`: adapter N of that list.
//! - `auto` (default): the best hardware GPU, else the CPU, with a one-line notice on stderr.
use clce_engine::Device;

#[derive(clap::Args, Clone, Debug)]
pub struct DeviceArg {
    /// Where to run: auto (a hardware GPU if one is found, else the CPU), cpu, gpu (the best
    /// adapter, software ones included), or gpu:N (see `clce-cli devices`).
    /// [auto]
    #[arg(long, env = "CLCE_DEVICE")]
    pub device: Option<String>,
}

impl DeviceArg {
    /// The device as given, or `auto`.
    pub fn name(&self) -> &str {
        self.device.as_deref().unwrap_or("auto")
    }

    /// Whether --device (or CLCE_DEVICE) was given: `finetune --resume` otherwise takes the
    /// run's own device from its config.json.
    pub fn given(&self) -> bool {
        self.device.is_some()
    }

    pub fn resolve(&self) -> Result<Device, String> {
        let d = self.name();
        let gpu = |index: usize| Device::gpu(index).map_err(|e| format!("--device {d}: {e}"));
        match d {
            "cpu" => Ok(Device::Cpu),
            "auto" => Ok(Device::try_auto().unwrap_or_else(|e| {
                eprintln!("note: {e}; running on the CPU");
                Device::Cpu
            })),
            "gpu" => gpu(0),
            _ => match d.strip_prefix("gpu:").map(str::parse::<usize>) {
                Some(Ok(index)) => gpu(index),
                _ => Err(format!("--device {d}: expected auto, cpu, gpu or gpu:N")),
            },
        }
    }
}
