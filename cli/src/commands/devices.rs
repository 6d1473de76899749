//! `clce-cli devices`: the adapters `--device gpu:N` can open, best first.
use std::process::ExitCode;

use clce_cli::train::Precision;
use clce_engine::{gpu, AllocatorModel};

use super::CmdResult;

#[derive(clap::Args)]
pub struct Args {}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

pub fn run(_args: Args) -> CmdResult {
    let adapters = gpu::adapters();
    println!(
        "cpu      the CPU backend (rayon, {} threads); default --precision {}",
        rayon_threads(),
        Precision::default_for(AllocatorModel::Cpu).name()
    );
    if adapters.is_empty() {
        println!("no GPU adapter found (wgpu sees no Vulkan, Metal, DX12 or GL compute device)");
    }
    for a in &adapters {
        println!(
            "gpu:{:<4} {} [{} {}{}]",
            a.index,
            a.name,
            a.backend,
            a.device_type,
            if a.is_software {
                ", software: --device auto skips it"
            } else {
                ""
            }
        );
        println!("         driver: {}", a.driver);
        println!(
            "         max buffer {}, max storage binding {}, workgroup storage {} KiB",
            mib(a.max_buffer_size),
            mib(a.max_storage_binding_size),
            a.max_workgroup_storage / 1024
        );
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let precision = Precision::default_for(AllocatorModel::Gpu {
            binding_limit: a.max_storage_binding_size,
            shader_f16: a.shader_f16,
        });
        println!(
            "         shader-f16 {}, subgroups {}, timestamp-query {}; default --precision {}",
            yes_no(a.shader_f16),
            yes_no(a.subgroups),
            yes_no(a.timestamp_query),
            precision.name()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
