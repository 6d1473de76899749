//! A training step on a GPU reads nothing back and, once the buffer pool is warm, creates no
//! buffer: counted by the device's counters on the real step (`Rig::step`, which runs
//! `StepCore::run` as `finetune` does between two logging steps).
use clce_cli::train::plan::Rig;
use clce_cli::train::{ModelFacts, Precision, TrainConfig, TrainFlags};
use clce_engine::gpu::testing::private_test_device;
use clce_engine::{DType, Tensor};

fn config(model: &str, batch: usize, clip: Option<f64>, micro_batch: Option<usize>) -> TrainConfig {
    let flags = TrainFlags {
        model: Some(model.into()),
        batch_size: Some(batch),
        image_size: Some(32),
        drop_path: model.starts_with("beit").then_some(0.1),
        ..TrainFlags::default()
    };
    let facts = ModelFacts {
        is_beit: model.starts_with("beit"),
        fixed_image_size: None,
    };
    TrainConfig {
        clip_grad: clip,
        micro_batch,
        ..flags.resolve(&facts, 10, 1000, "test").unwrap()
    }
}

#[test]
fn warm_gpu_steps_read_nothing_back_and_create_no_buffers() {
    let Some(gpu) = private_test_device() else {
        return;
    };
    let cases = [
        config("beit-tiny", 3, None, None),
        config("beit-tiny", 3, Some(0.5), None),
        config("resnet-tiny", 3, Some(0.5), None),
        config("beit-tiny", 3, Some(0.5), Some(4)),
        // --precision f16: the loss scale is multiplied in, updated and read by AdamW on
        // the device.
        f16(config("beit-tiny", 3, Some(0.5), None)),
        f16(config("resnet-tiny", 3, None, Some(4))),
    ];
    for cfg in &cases {
        let what = format!(
            "{} clip {:?} micro-batch {:?} {:?}",
            cfg.model, cfg.clip_grad, cfg.micro_batch, cfg.precision
        );
        let mut rig = Rig::new(cfg, &gpu).unwrap();
        let x = Tensor::randn([2 * cfg.batch_size, 3, 32, 32], 1.0, 3, DType::F32, &gpu).unwrap();
        rig.step(cfg, 0, &x).unwrap();
        gpu.synchronize().unwrap();
        let before = gpu.gpu_counters().unwrap();
        for step in 1..3 {
            rig.step(cfg, step, &x).unwrap();
        }
        gpu.synchronize().unwrap();
        let c = gpu.gpu_counters().unwrap().since(&before);
        eprintln!("{what}: two warm steps {c:?}");
        assert_eq!(c.readbacks, 0, "{what}");
        assert_eq!(c.buffer_creations, 0, "{what}");
        assert!(c.dispatches > 100, "{what}: {c:?}");

        // The logging step's read: one readback, and the steps were finite.
        let before = gpu.gpu_counters().unwrap();
        let report = rig.guard.read().unwrap();
        assert_eq!(gpu.gpu_counters().unwrap().since(&before).readbacks, 1);
        assert_eq!(report.first_bad, None, "{what}");
        assert!(
            report.grad_norm > 0.0 && report.grad_norm.is_finite(),
            "{what}"
        );
        if cfg.precision == Precision::F16 {
            assert_eq!(report.loss_scale.scale, 65536.0, "{what}");
            assert_eq!(report.loss_scale.good_steps, 3, "{what}");
        }
    }
}

fn f16(cfg: TrainConfig) -> TrainConfig {
    let flags = TrainFlags {
        precision: Some(Precision::F16),
        ..TrainFlags::default()
    };
    let facts = ModelFacts {
        is_beit: cfg.model.starts_with("beit"),
        fixed_image_size: None,
    };
    TrainConfig {
        precision: Precision::F16,
        loss_scaling: flags
            .resolve(&facts, 10, 1000, "test")
            .unwrap()
            .loss_scaling,
        ..cfg
    }
}
