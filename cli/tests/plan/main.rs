//! `clce-cli plan` against measurement: the peak a plan predicts on the meta device is the peak
//! the real step reaches, counted by the CPU's accounting and by a GPU's buffer pool.
//!
//! One test function runs everything in turn: the CPU counters are per process, so no other
//! test may allocate while a step is measured.
use clce_cli::train::plan::{allocator_of, plan, Rig};
use clce_cli::train::{ModelFacts, TrainConfig, TrainFlags};
use clce_engine::{DType, Device, Tensor};

fn config(model: &str, batch: usize, side: usize, checkpointing: bool) -> TrainConfig {
    let flags = TrainFlags {
        model: Some(model.into()),
        batch_size: Some(batch),
        image_size: Some(side),
        drop_path: model.starts_with("beit").then_some(0.1),
        checkpoint_activations: checkpointing,
        ..TrainFlags::default()
    };
    let facts = ModelFacts {
        is_beit: model.starts_with("beit"),
        fixed_image_size: None,
    };
    flags.resolve(&facts, 10, 1000, "test").unwrap()
}

fn micro_batched(cfg: TrainConfig, k: usize) -> TrainConfig {
    TrainConfig {
        micro_batch: Some(k),
        ..cfg
    }
}

/// The peak tensor memory of one real step of `cfg` on `device`, measured as `plan` counts
/// it: from after the model and the optimiser exist.
fn measured_peak(cfg: &TrainConfig, device: &Device) -> u64 {
    let mut rig = Rig::new(cfg, device).unwrap();
    device.synchronize().unwrap();
    device.reset_peak_memory();
    let s = cfg.image_size;
    let x = Tensor::randn([2 * cfg.batch_size, 3, s, s], 1.0, 7, DType::F32, device).unwrap();
    rig.step(cfg, 0, &x).unwrap();
    device.synchronize().unwrap();
    device.memory_stats().peak_live_bytes
}

fn check(cfg: &TrainConfig, device: &Device) {
    let planned = plan(cfg, allocator_of(device)).unwrap().peak_bytes;
    let measured = measured_peak(cfg, device);
    let ratio = planned as f64 / measured as f64;
    eprintln!(
        "{} batch {} x {} px, checkpointing {}, micro-batch {:?}, {device}: planned {planned}, measured {measured} ({ratio:.4})",
        cfg.model, cfg.batch_size, cfg.image_size, cfg.checkpoint_activations, cfg.micro_batch
    );
    assert!(
        (0.9..=1.1).contains(&ratio),
        "{} on {device}: plan {planned} vs measured {measured}",
        cfg.model
    );
}

#[test]
fn plans_match_the_measured_peak_of_a_real_step() {
    let cases = [
        config("beit-tiny", 6, 32, false),
        config("beit-tiny", 6, 32, true),
        config("resnet-tiny", 5, 32, false),
        config("resnet-tiny", 5, 32, true),
        micro_batched(config("beit-tiny", 6, 32, false), 5),
        micro_batched(config("resnet-tiny", 5, 32, true), 4),
    ];
    for cfg in &cases {
        check(cfg, &Device::Cpu);
    }
    if let Some(gpu) = clce_engine::gpu::testing::test_device() {
        for cfg in &cases {
            check(cfg, &gpu);
        }
    }
}

/// Micro-batches cap the activations at a chunk's: 32 images in chunks of 8 views plan
/// about as a plain step of 4 images. On top: the parameters' gradients, which from the
/// second chunk on are all live while a chunk's activations are (a plain step's peak comes
/// before most of them exist): 346 MB of BEiT-base's 2.3 GB, 15%.
#[test]
fn micro_batches_plan_like_a_step_of_one_chunk() {
    for model in ["beit-base", "resnet-101"] {
        let cpu = clce_engine::AllocatorModel::Cpu;
        let small = plan(&config(model, 4, 224, false), cpu).unwrap();
        let chunked = plan(&micro_batched(config(model, 32, 224, false), 8), cpu).unwrap();
        let whole = plan(&config(model, 32, 224, false), cpu).unwrap();
        let ratio = chunked.peak_bytes as f64 / small.peak_bytes as f64;
        eprintln!(
            "{model}: 4 images {}, 32 images in chunks of 8 views {} ({ratio:.3}), 32 images {}",
            small.peak_bytes, chunked.peak_bytes, whole.peak_bytes
        );
        assert!((0.9..1.2).contains(&ratio), "{model}: {ratio}");
        assert!(whole.peak_bytes > 3 * chunked.peak_bytes, "{model}");
    }
}

/// On the product's models at 224 px (planning runs nothing, so their size costs no time).
#[test]
fn checkpointing_lowers_the_planned_peak_of_both_models() {
    for model in ["beit-base", "resnet-101"] {
        let without = plan(
            &config(model, 2, 224, false),
            clce_engine::AllocatorModel::Cpu,
        )
        .unwrap();
        let with = plan(
            &config(model, 2, 224, true),
            clce_engine::AllocatorModel::Cpu,
        )
        .unwrap();
        assert!(
            with.activations_bytes < without.activations_bytes,
            "{model}: {} with checkpointing vs {} without",
            with.activations_bytes,
            without.activations_bytes
        );
        assert_eq!(with.weights_bytes, without.weights_bytes);
    }
}
