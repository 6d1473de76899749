//! `--device auto|cpu|gpu|gpu:N`, shared by every command (also read from CLCE_DEVICE).
use clce_engine::Device;

#[derive(clap::Args, Clone, Debug)]
pub struct DeviceArg {
    /// Where to run: auto (a GPU if one is found, else the CPU), cpu, gpu, or gpu:N.
    #[arg(long, env = "CLCE_DEVICE", default_value = "auto")]
    pub device: String,
}

impl DeviceArg {
    pub fn resolve(&self) -> Result<Device, String> {
        match self.device.as_str() {
            "cpu" | "auto" => Ok(Device::Cpu),
            d if d == "gpu" || d.starts_with("gpu:") => Err(format!(
                "--device {d}: this build has no GPU backend yet; use --device cpu"
            )),
            d => Err(format!("--device {d}: expected auto, cpu, gpu or gpu:N")),
        }
    }
}
