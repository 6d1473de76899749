//! `clce-cli plan` against measurement: the peak a plan predicts on the meta device is the peak
//! the real step reaches, counted by the CPU's accounting and by a GPU's buffer pool.
//!
//! One test function runs everything in turn: the CPU counters are per process, so no other
//! test may allocate while a step is measured.
use clce_cli::train::model::{objective_for, random_model, Finetuned};
use clce_cli::train::plan::{allocator_of, plan};
use clce_cli::train::trainer::{step_mode, StepCore};
use clce_cli::train::{GroupOptions, ModelFacts, Network, TrainConfig, TrainError, TrainFlags};
use clce_engine::optim::{AdamW, AdamWConfig, Optimizer};
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

/// The peak tensor memory of one real step of `cfg` on `device`, measured as `plan` counts
/// it: from after the model and the optimiser exist.
fn measured_peak(cfg: &TrainConfig, device: &Device) -> u64 {
    let net = Finetuned {
        model: random_model(cfg, device).unwrap(),
        frozen_backbone: false,
    };
    let groups = net.param_groups(&GroupOptions {
        weight_decay: cfg.weight_decay,
        layer_decay: cfg.layer_decay,
        heads_only: false,
    });
    let mut opt = AdamW::new(groups, AdamWConfig::default()).unwrap();
    let trained = opt.params();
    let objective = objective_for(cfg).unwrap();
    let labels: Vec<usize> = (0..2 * cfg.batch_size)
        .map(|i| (i % cfg.batch_size) % cfg.num_classes)
        .collect();
    let core = StepCore {
        net: &net,
        objective: &objective,
        mode: step_mode(cfg, 0),
        clip_grad: cfg.clip_grad,
        lr: cfg.lr,
    };
    let never = |what, value| TrainError::Invalid(format!("{what} {value}"));
    device.synchronize().unwrap();
    device.reset_peak_memory();
    let s = cfg.image_size;
    let x = Tensor::randn([2 * cfg.batch_size, 3, s, s], 1.0, 7, DType::F32, device).unwrap();
    core.run(&mut opt, &trained, &x, &labels, &never).unwrap();
    device.synchronize().unwrap();
    device.memory_stats().peak_live_bytes
}

fn check(cfg: &TrainConfig, device: &Device) {
    let planned = plan(cfg, allocator_of(device)).unwrap().peak_bytes;
    let measured = measured_peak(cfg, device);
    let ratio = planned as f64 / measured as f64;
    eprintln!(
        "{} batch {} x {} px, checkpointing {}, {device}: planned {planned}, measured {measured} ({ratio:.4})",
        cfg.model, cfg.batch_size, cfg.image_size, cfg.checkpoint_activations
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
