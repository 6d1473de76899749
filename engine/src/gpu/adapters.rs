//! Finding adapters: every one wgpu can open that runs compute shaders, described for
//! `clce-cli devices`, and ranked so that `gpu:0` is the best.
//!
//! Ranking: discrete GPU, then integrated, then virtual or unknown, then software (CPU-type
//! adapters such as lavapipe) last; within a kind, native APIs (Vulkan, Metal, DX12) before GL.
//! `--device gpu` takes the first, so it reaches lavapipe only when nothing else exists;
//! `--device auto` never takes a software adapter (the engine's own CPU kernels are hundreds
//! of times faster than a software rasteriser's compute shaders) and uses the CPU instead.
use std::sync::OnceLock;

/// What `clce-cli devices` prints about one adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterSummary {
    /// Position in the ranking: `gpu:index`.
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    /// A CPU-type adapter (software rendering, e.g. lavapipe).
    pub is_software: bool,
    pub max_buffer_size: u64,
    pub max_storage_binding_size: u64,
    pub max_workgroup_storage: u32,
    pub shader_f16: bool,
    pub subgroups: bool,
    pub timestamp_query: bool,
}

/// Mesa's Vulkan driver looks for a Wayland session while the adapters are enumerated (for
/// presenting to a window, which clce never does), and with XDG_RUNTIME_DIR unset it prints
/// "error: XDG_RUNTIME_DIR is invalid or not set in the environment." twice: to a newcomer a
/// failure, though nothing failed. With the variable set (to the temporary directory, where
/// no Wayland socket lives) it looks, finds nothing and says nothing.
///
/// Changes the process environment, so call it before any other thread starts (first thing
/// in `main`).
pub fn quiet_wayland_probe() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
}

pub(crate) fn instance() -> &'static wgpu::Instance {
    static INSTANCE: OnceLock<wgpu::Instance> = OnceLock::new();
    INSTANCE.get_or_init(|| {
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
    })
}

/// The usable adapters, best first (enumerated once per process).
pub(crate) fn ranked() -> &'static [wgpu::Adapter] {
    static RANKED: OnceLock<Vec<wgpu::Adapter>> = OnceLock::new();
    RANKED.get_or_init(|| {
        let mut all: Vec<wgpu::Adapter> =
            pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()))
                .into_iter()
                .filter(|a| {
                    a.get_downlevel_capabilities()
                        .flags
                        .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
                })
                .collect();
        all.sort_by_key(|a| rank(&a.get_info()));
        all
    })
}

fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let api = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::Gl => 1,
        _ => 2,
    };
    (kind, api)
}

pub(crate) fn summary(index: usize, adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let limits = adapter.limits();
    let features = adapter.features();
    AdapterSummary {
        index,
        name: info.name.clone(),
        backend: info.backend.to_str().to_string(),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        is_software: info.device_type == wgpu::DeviceType::Cpu,
        max_buffer_size: limits.max_buffer_size,
        max_storage_binding_size: limits.max_storage_buffer_binding_size,
        max_workgroup_storage: limits.max_compute_workgroup_storage_size,
        shader_f16: features.contains(wgpu::Features::SHADER_F16),
        subgroups: features.contains(wgpu::Features::SUBGROUP),
        timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
    }
}

/// Every usable adapter, best first; `gpu:N` opens the one with index N.
pub fn adapters() -> Vec<AdapterSummary> {
    ranked()
        .iter()
        .enumerate()
        .map(|(i, a)| summary(i, a))
        .collect()
}
