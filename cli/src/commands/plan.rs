//! `clce-cli plan`: the peak memory of one training step for a configuration, found by running
//! the step on the shape-only meta device (see `train/plan.rs`). Nothing is read (but a
//! `--weights` file's header) and nothing is computed.
use std::process::ExitCode;

use clce_engine::AllocatorModel;
use serde_json::json;

use super::CmdResult;
use crate::device_arg::DeviceArg;
use clce_cli::train::model;
use clce_cli::train::plan::{allocator_of, plan, MemorySettings, Plan};
use clce_cli::train::progress::format_bytes;
use clce_cli::train::{TrainConfig, TrainError, TrainFlags};

/// Training images assumed when checking the batch size against the data set: CIFAR-100's.
const PLANNED_TRAIN_IMAGES: usize = 50_000;

/// wgpu's largest storage binding on Vulkan: what `--device generic-gpu` plans against.
const GENERIC_GPU_BINDING_LIMIT: u64 = (2 << 30) - 4;

#[derive(clap::Args)]
pub struct Args {
    /// Every `finetune` setting that changes memory: --model, --batch-size, --image-size,
    /// --loss, --checkpoint-activations, --freeze-backbone, --num-classes [100], ...
    #[command(flatten)]
    flags: TrainFlags,
    /// Plan for this device's allocator: cpu, gpu, gpu:N (that adapter's binding limit and
    /// buffer pool), auto, or generic-gpu (a GPU pool with wgpu's 2 GiB binding limit, for
    /// planning without the GPU at hand).
    #[arg(long, env = "CLCE_DEVICE", default_value = "auto")]
    device: String,
    /// Print one JSON object (with `peak_bytes`) instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> CmdResult {
    let (target, device_name) = match args.device.as_str() {
        "generic-gpu" => (
            AllocatorModel::Gpu {
                binding_limit: GENERIC_GPU_BINDING_LIMIT,
                // Vulkan, Metal and DX12 GPUs of the last years have it.
                shader_f16: true,
            },
            "a GPU with a 2 GiB binding limit".to_string(),
        ),
        _ => {
            let device = DeviceArg {
                device: Some(args.device.clone()),
            }
            .resolve()?;
            (allocator_of(&device), device.to_string())
        }
    };
    let cfg = planned_config(&args.flags, &args.device, target)?;
    let plan = plan(&cfg, target)?;
    if args.json {
        println!("{}", plan_json(&cfg, &plan, &device_name));
    } else {
        print!("{}", plan_table(&cfg, &plan, &device_name));
    }
    Ok(ExitCode::SUCCESS)
}

/// The configuration `finetune` would resolve from these flags on a device that allocates like
/// `target`, without reading data: the class count is `--num-classes` (default 100).
pub fn planned_config(
    flags: &TrainFlags,
    device: &str,
    target: AllocatorModel,
) -> Result<TrainConfig, TrainError> {
    let flags = flags.with_device_defaults(target);
    let described = model::describe(flags.model_name(), flags.weights.as_deref())?;
    let facts = model::facts(&described);
    let num_classes = flags.num_classes.unwrap_or(100);
    let batch = flags.batch_size.unwrap_or(64);
    flags.resolve(&facts, num_classes, PLANNED_TRAIN_IMAGES.max(batch), device)
}

fn plan_json(cfg: &TrainConfig, plan: &Plan, device: &str) -> serde_json::Value {
    json!({
        "model": cfg.model,
        "batch_size": cfg.batch_size,
        "views": 2 * cfg.batch_size,
        "image_size": cfg.image_size,
        "loss": cfg.loss,
        "checkpoint_activations": cfg.checkpoint_activations,
        "micro_batch": cfg.micro_batch,
        "precision": cfg.precision,
        "device": device,
        "peak_bytes": plan.peak_bytes,
        "weights_bytes": plan.weights_bytes,
        "optimizer_bytes": plan.optimizer_bytes,
        "gradients_bytes": plan.gradients_bytes,
        "activations_bytes": plan.activations_bytes,
        "largest_buffer_bytes": plan.largest_buffer.bytes,
        "largest_buffer_op": plan.largest_buffer.op,
        "binding_limit_bytes": plan.binding_limit,
        "exceeds_binding_limit": plan.exceeds_binding_limit(),
        "ops_at_peak": plan.ops_at_peak.iter().map(|(op, b)| json!({"op": op, "bytes": b})).collect::<Vec<_>>(),
    })
}

fn plan_table(cfg: &TrainConfig, plan: &Plan, device: &str) -> String {
    let mut out = format!(
        "{} {} images ({} views) x {} px, loss {}, {}, on {device}\n",
        cfg.model,
        cfg.batch_size,
        2 * cfg.batch_size,
        cfg.image_size,
        cfg.loss,
        MemorySettings::of(cfg)
    );
    let row = |name: &str, bytes: u64| format!("  {name:<28} {:>10}\n", format_bytes(bytes));
    out += &row("peak of one training step", plan.peak_bytes);
    out += &row("  weights", plan.weights_bytes);
    out += &row("  optimiser state (AdamW)", plan.optimizer_bytes);
    out += &row("  gradients", plan.gradients_bytes);
    out += &row("  activations and temporaries", plan.activations_bytes);
    out += &format!(
        "  {:<28} {:>10} ({})",
        "largest single buffer",
        format_bytes(plan.largest_buffer.bytes),
        plan.largest_buffer.op
    );
    match plan.binding_limit {
        Some(limit) if plan.exceeds_binding_limit() => {
            out += &format!(
                ": ABOVE the binding limit of {}; this step would fail on this device\n",
                format_bytes(limit)
            )
        }
        Some(limit) => out += &format!(", binding limit {}\n", format_bytes(limit)),
        None => out += "\n",
    }
    out += "  activations at the peak, by the op that allocated them:\n";
    for (op, bytes) in plan.ops_at_peak.iter().take(8) {
        out += &format!("    {op:<26} {:>10}\n", format_bytes(*bytes));
    }
    out
}
