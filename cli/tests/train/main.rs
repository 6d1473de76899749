//! The training machinery (loop, metrics, checkpoints, resume, stopping, NaN handling, the
//! gradient check) driven by a tiny stand-in model; the end-to-end runs of the real models
//! are in tests/finetune.
mod stand_in;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use clce_cli::data::{AugmentConfig, DataSpec, Dataset, Normalization};
use clce_cli::train::checkpoint;
use clce_cli::train::gradcheck::{self, GradcheckOptions, Report, Side};
use clce_cli::train::metrics::{self, Record};
use clce_cli::train::progress::{OutputMode, Reporter};
use clce_cli::train::trainer::{train, Objective, Outcome, Session};
use clce_cli::train::{
    Mode, ModelFacts, Network, Output, Result, RunDir, TrainConfig, TrainError, TrainFlags,
};
use clce_engine::{DType, Device, Tensor};
use stand_in::StandIn;

const SIDE: usize = 12;
const INPUTS: usize = 3 * SIDE * SIDE;
const NORM: Normalization = Normalization {
    mean: [0.5; 3],
    std: [0.25; 3],
};

fn dataset() -> Dataset {
    dataset_of("synthetic:classes=4,train=20,test=10")
}

fn dataset_of(spec: &str) -> Dataset {
    let spec: DataSpec = spec.parse().unwrap();
    Dataset::open(&spec, Path::new("."), SIDE).unwrap()
}

/// With `dataset()`'s 80 training images in batches of 16: 5 steps per epoch.
fn config(data: &Dataset, edit: impl FnOnce(&mut TrainFlags)) -> TrainConfig {
    let mut flags = TrainFlags {
        model: Some("stand-in".into()),
        data: Some("synthetic:classes=4,train=20,test=10".into()),
        batch_size: Some(16),
        lr: Some(3e-3),
        warmup_epochs: Some(1.0),
        epochs: Some(3),
        log_every: Some(1),
        no_gradcheck: true,
        ..TrainFlags::default()
    };
    edit(&mut flags);
    let facts = ModelFacts {
        is_beit: false,
        fixed_image_size: Some(SIDE),
    };
    flags
        .resolve(&facts, data.num_classes(), data.train.len(), "cpu")
        .unwrap()
}

/// A milder augmentation than the paper's: the stand-in is a one-hidden-layer perceptron on
/// raw pixels, which cannot learn through heavy crops and colour changes in a few steps.
fn augment() -> AugmentConfig {
    AugmentConfig {
        crop_scale: (0.8, 1.0),
        jitter_p: 0.0,
        grayscale_p: 0.0,
        ..AugmentConfig::clce(SIDE, NORM)
    }
}

fn cross_entropy(out: &Output, labels: &[usize]) -> Result<Tensor> {
    Ok(out.logits.cross_entropy(labels, 0.0)?)
}

/// The weights of a fresh stand-in after `steps` cross-entropy steps of `cfg`, from a run
/// stopped there.
fn values_after_steps(cfg: &TrainConfig, data: &Dataset, steps: usize) -> Vec<Vec<f32>> {
    let dir = tempfile::tempdir().unwrap();
    let probe = RunDir::create(Some(&dir.path().join("p")), cfg).unwrap();
    let twin = StandIn::new(INPUTS, 4, 0);
    run(&twin, cfg, data, &probe, &cross_entropy, Some(steps)).unwrap();
    twin.values()
}

fn run(
    net: &StandIn,
    cfg: &TrainConfig,
    data: &Dataset,
    run: &RunDir,
    objective: Objective,
    stop_after_steps: Option<usize>,
) -> Result<Outcome> {
    let stop = AtomicBool::new(false);
    let session = Session {
        net,
        cfg,
        data,
        augment: augment(),
        device: Device::Cpu,
        objective,
        run,
        stop: &stop,
        stop_after_steps,
        fewshot: None,
        distributed: None,
    };
    let resume = match run.state_path().exists() {
        true => Some(checkpoint::load(run).unwrap()),
        false => None,
    };
    train(&session, &mut Reporter::new(OutputMode::Quiet), resume)
}

fn epochs(path: &Path) -> Vec<metrics::EpochRecord> {
    metrics::read(path)
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Record::Epoch(e) => Some(e),
            Record::Step(_) => None,
        })
        .collect()
}

/// The records without their timing fields, which differ from run to run.
fn without_timings(records: Vec<Record>) -> Vec<Record> {
    records
        .into_iter()
        .map(|r| match r {
            Record::Step(s) => Record::Step(metrics::StepRecord {
                images_per_s: 0.0,
                ..s
            }),
            Record::Epoch(e) => Record::Epoch(metrics::EpochRecord {
                images_per_s: 0.0,
                seconds: 0.0,
                peak_mem_bytes: 0,
                ..e
            }),
        })
        .collect()
}

#[test]
fn loss_falls_accuracy_rises_and_the_run_directory_is_complete() {
    let spec = "synthetic:classes=4,train=50,test=25";
    let data = dataset_of(spec);
    let cfg = config(&data, |f| {
        f.data = Some(spec.into());
        f.epochs = Some(4);
    });
    let dir = tempfile::tempdir().unwrap();
    let rd = RunDir::create(Some(&dir.path().join("run")), &cfg).unwrap();
    let net = StandIn::new(INPUTS, 4, 0);
    let Outcome::Finished { tally, best } =
        run(&net, &cfg, &data, &rd, &cross_entropy, None).unwrap()
    else {
        panic!("the run should finish");
    };
    let e = epochs(&rd.metrics_path());
    assert_eq!(e.len(), 4);
    // Measured: loss 1.41 -> 0.68, test top-1 0.40 -> 0.72 (chance is 0.25).
    assert!(
        e[3].loss < 0.7 * e[0].loss,
        "loss {} -> {}",
        e[0].loss,
        e[3].loss
    );
    assert!(e[3].test_top1 >= 0.6, "test top-1 {}", e[3].test_top1);
    assert_eq!(tally.top1(), e[3].test_top1);
    let (best_top1, best_epoch) = best.unwrap();
    assert_eq!(best_top1, e.iter().map(|r| r.test_top1).fold(0.0, f64::max));
    assert!(e[best_epoch - 1].best);
    assert_eq!(e.last().unwrap().step, 4 * cfg.steps_per_epoch);

    let steps: Vec<_> = metrics::read(&rd.metrics_path())
        .unwrap()
        .into_iter()
        .filter(|r| matches!(r, Record::Step(_)))
        .collect();
    assert_eq!(
        steps.len(),
        4 * cfg.steps_per_epoch,
        "log_every 1: a line per step"
    );

    let (_, saved_cfg) = RunDir::open(rd.root()).unwrap();
    assert_eq!(saved_cfg, cfg);
    assert_eq!(StandIn::load(&rd.last_path()).values(), net.values());
    assert!(rd.best_path().exists());
    let per_class: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rd.per_class_path()).unwrap()).unwrap();
    assert_eq!(per_class["classes"].as_array().unwrap().len(), 4);
    assert_eq!(per_class["test_top1"].as_f64().unwrap(), tally.top1());
    assert_eq!(per_class["classes"][0]["images"], 25);
    // Nothing temporary is left behind.
    for entry in std::fs::read_dir(rd.root()).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(!name.to_string_lossy().ends_with(".tmp"), "{name:?}");
    }
}

#[test]
fn an_interrupted_and_resumed_run_repeats_the_uninterrupted_one() {
    let data = dataset();
    assert_resumed_run_repeats_the_uninterrupted_one(&data, &config(&data, |_| {}));
}

/// Also in micro-batches (of 5 views: the last of a step's 32 views is a chunk of 2).
#[test]
fn a_resumed_micro_batched_run_repeats_the_uninterrupted_one() {
    let data = dataset();
    let cfg = config(&data, |f| f.micro_batch = Some(5));
    assert_resumed_run_repeats_the_uninterrupted_one(&data, &cfg);
}

fn assert_resumed_run_repeats_the_uninterrupted_one(data: &Dataset, cfg: &TrainConfig) {
    let dir = tempfile::tempdir().unwrap();

    let straight = RunDir::create(Some(&dir.path().join("straight")), &cfg).unwrap();
    let net = StandIn::new(INPUTS, 4, 0);
    run(&net, &cfg, &data, &straight, &cross_entropy, None).unwrap();

    // Stopped in the middle of epoch 2 (step 7 of 5 per epoch), then at the end of epoch 2,
    // each time continued by a fresh process's worth of state: the model read back from
    // last.safetensors, the optimiser and position from train_state.safetensors.
    let broken = RunDir::create(Some(&dir.path().join("broken")), &cfg).unwrap();
    let first = StandIn::new(INPUTS, 4, 0);
    let outcome = run(&first, &cfg, &data, &broken, &cross_entropy, Some(7)).unwrap();
    assert!(
        matches!(outcome, Outcome::Stopped { step: 7 }),
        "{outcome:?}"
    );
    let second = StandIn::load(&broken.last_path());
    let outcome = run(&second, &cfg, &data, &broken, &cross_entropy, Some(10)).unwrap();
    assert!(
        matches!(outcome, Outcome::Stopped { step: 10 }),
        "{outcome:?}"
    );
    let third = StandIn::load(&broken.last_path());
    run(&third, &cfg, &data, &broken, &cross_entropy, None).unwrap();

    assert_eq!(
        without_timings(metrics::read(&broken.metrics_path()).unwrap()),
        without_timings(metrics::read(&straight.metrics_path()).unwrap())
    );
    assert_eq!(third.values(), net.values(), "bit-identical final weights");
    assert_eq!(
        std::fs::read(broken.best_path()).unwrap(),
        std::fs::read(straight.best_path()).unwrap()
    );
}

#[test]
fn a_nan_loss_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint() {
    let data = dataset();
    let cfg = config(&data, |_| {});
    let dir = tempfile::tempdir().unwrap();
    let rd = RunDir::create(Some(&dir.path().join("run")), &cfg).unwrap();
    let net = StandIn::new(INPUTS, 4, 0);
    // The 8th evaluation of the objective (step 8, in epoch 2) is NaN.
    let calls = std::cell::Cell::new(0);
    let poisoned = |out: &Output, labels: &[usize]| {
        calls.set(calls.get() + 1);
        let loss = cross_entropy(out, labels)?;
        Ok(if calls.get() == 8 {
            loss.mul_scalar(f64::NAN)?
        } else {
            loss
        })
    };
    let err = run(&net, &cfg, &data, &rd, &poisoned, None).unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::NonFinite {
                what: "loss",
                step: 8,
                epoch: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("step 8") && msg.contains("NaN"), "{msg}");
    // The checkpoint of epoch 1 is intact and resumable.
    let (state, _) = checkpoint::load(&rd).unwrap();
    assert_eq!((state.epoch, state.step), (1, 5));
    let saved = StandIn::load(&rd.last_path());
    assert!(saved.values().iter().flatten().all(|v| v.is_finite()));
}

#[test]
fn an_exploding_gradient_stops_the_run_before_it_reaches_the_weights() {
    let data = dataset();
    let cfg = config(&data, |_| {});
    let dir = tempfile::tempdir().unwrap();
    let rd = RunDir::create(Some(&dir.path().join("run")), &cfg).unwrap();
    let net = StandIn::new(INPUTS, 4, 0);
    // At step 3 the loss gains a term that is exactly 0 but has a gradient of 1e30 per
    // logit: the loss stays finite, the squared gradient norm overflows f32.
    let calls = std::cell::Cell::new(0);
    let exploding = |out: &Output, labels: &[usize]| {
        calls.set(calls.get() + 1);
        let loss = cross_entropy(out, labels)?;
        if calls.get() != 3 {
            return Ok(loss);
        }
        let total = out.logits.sum_all()?;
        let zero = total.sub(&total.detach())?.mul_scalar(1e30)?;
        Ok(loss.add(&zero)?)
    };
    let before = values_after_steps(&cfg, &data, 2);
    let err = run(&net, &cfg, &data, &rd, &exploding, None).unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::NonFinite {
                what: "gradient norm",
                step: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        net.values(),
        before,
        "the bad step must not touch the weights"
    );
}

/// `--precision f16` with a loss scale that overflows: every step's objective gains a term
/// that is exactly 0 but has a gradient of 1e10 per logit, so that gradients scaled by more
/// than about 2^90 leave the f32 range (unscaled, their squares still fit).
fn overflowing(out: &Output, labels: &[usize]) -> Result<Tensor> {
    let loss = cross_entropy(out, labels)?;
    let total = out.logits.sum_all()?;
    Ok(loss.add(&total.sub(&total.detach())?.mul_scalar(1e10)?)?)
}

fn f16_scaled(data: &Dataset, init: f64, growth_interval: usize) -> TrainConfig {
    config(data, |f| {
        f.precision = Some(clce_cli::train::Precision::F16);
        f.loss_scale_init = Some(init);
        f.loss_scale_growth_interval = Some(growth_interval);
    })
}

/// The loss scale's every move (skips, halvings, doublings across the interruptions) and the
/// skipped steps are in the checkpoint: a resumed run repeats the uninterrupted one.
#[test]
fn an_f16_run_skips_overflowing_steps_and_resumes_with_its_loss_scale() {
    let data = dataset();
    let cfg = f16_scaled(&data, 2f64.powi(100), 2);
    let dir = tempfile::tempdir().unwrap();
    let straight = RunDir::create(Some(&dir.path().join("straight")), &cfg).unwrap();
    let net = StandIn::new(INPUTS, 4, 0);
    run(&net, &cfg, &data, &straight, &overflowing, None).unwrap();
    let broken = RunDir::create(Some(&dir.path().join("broken")), &cfg).unwrap();
    let first = StandIn::new(INPUTS, 4, 0);
    run(&first, &cfg, &data, &broken, &overflowing, Some(7)).unwrap();
    let second = StandIn::load(&broken.last_path());
    run(&second, &cfg, &data, &broken, &overflowing, None).unwrap();

    let records = metrics::read(&straight.metrics_path()).unwrap();
    let steps: Vec<metrics::StepRecord> = records
        .iter()
        .filter_map(|r| match r {
            Record::Step(s) => Some(s.clone()),
            Record::Epoch(_) => None,
        })
        .collect();
    let scales: Vec<f64> = steps.iter().map(|s| s.loss_scale.unwrap()).collect();
    let skipped: Vec<usize> = steps.iter().map(|s| s.skipped_steps.unwrap()).collect();
    assert_eq!(
        scales[0],
        2f64.powi(99),
        "the first step overflows: {scales:?}"
    );
    assert!(
        skipped.windows(2).any(|w| w[1] == w[0] && w[0] > 0),
        "steps after the skips must go through: {skipped:?}"
    );
    assert!(
        scales.windows(2).any(|w| w[1] == 2.0 * w[0]),
        "two good steps double the scale: {scales:?}"
    );
    assert!(net.values().iter().flatten().all(|v| v.is_finite()));
    assert_eq!(
        without_timings(metrics::read(&broken.metrics_path()).unwrap()),
        without_timings(records)
    );
    assert_eq!(second.values(), net.values(), "bit-identical final weights");
}

/// A gradient still not finite at the floor scale (1) stops the run as without f16, naming
/// the step, with the weights from before the first overflowing step.
#[test]
fn an_f16_overflow_that_persists_at_the_floor_scale_stops_the_run() {
    let data = dataset();
    let cfg = f16_scaled(&data, 4.0, 2000);
    let dir = tempfile::tempdir().unwrap();
    let rd = RunDir::create(Some(&dir.path().join("run")), &cfg).unwrap();
    let net = StandIn::new(INPUTS, 4, 0);
    // From step 3 on, a zero term whose gradient (1e30 per logit) overflows any scale.
    let calls = std::cell::Cell::new(0);
    let exploding = |out: &Output, labels: &[usize]| {
        calls.set(calls.get() + 1);
        let loss = cross_entropy(out, labels)?;
        if calls.get() < 3 {
            return Ok(loss);
        }
        let total = out.logits.sum_all()?;
        Ok(loss.add(&total.sub(&total.detach())?.mul_scalar(1e30)?)?)
    };
    let before = values_after_steps(&cfg, &data, 2);
    let err = run(&net, &cfg, &data, &rd, &exploding, None).unwrap_err();
    // Step 3 halves 4 to 2, step 4 halves 2 to 1, step 5 overflows at the floor.
    assert!(
        matches!(
            err,
            TrainError::NonFinite {
                what: "gradient norm",
                step: 5,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("step 5"), "{err}");
    assert_eq!(
        net.values(),
        before,
        "skipped steps must not touch the weights"
    );
    let logged = metrics::read(&rd.metrics_path()).unwrap();
    let last = logged.iter().rev().find_map(|r| match r {
        Record::Step(s) => Some(s.clone()),
        Record::Epoch(_) => None,
    });
    let last = last.expect("steps 1 to 4 are logged");
    assert_eq!(
        (last.step, last.skipped_steps, last.loss_scale),
        (4, Some(2), Some(1.0))
    );
}

/// Powers of two divide out exactly: a scaled run that never overflows trains bit for bit as
/// one at scale 1 (the scale doubling on the way), and as an f16 run can without scaling.
#[test]
fn loss_scaling_without_overflow_changes_no_bit() {
    let data = dataset();
    let dir = tempfile::tempdir().unwrap();
    let mut finals = Vec::new();
    for (name, init, interval) in [("one", 1.0, 1 << 23), ("big", 65536.0, 4)] {
        let cfg = f16_scaled(&data, init, interval);
        let rd = RunDir::create(Some(&dir.path().join(name)), &cfg).unwrap();
        let net = StandIn::new(INPUTS, 4, 0);
        run(&net, &cfg, &data, &rd, &cross_entropy, None).unwrap();
        let steps: Vec<metrics::StepRecord> = metrics::read(&rd.metrics_path())
            .unwrap()
            .into_iter()
            .filter_map(|r| match r {
                Record::Step(s) => Some(s),
                Record::Epoch(_) => None,
            })
            .collect();
        assert_eq!(steps.last().unwrap().skipped_steps, Some(0), "{name}");
        let losses: Vec<(f64, f64)> = steps.iter().map(|s| (s.loss, s.grad_norm)).collect();
        finals.push((net.values(), losses, steps.last().unwrap().loss_scale));
    }
    assert_eq!(finals[0].2, Some(1.0));
    assert_eq!(
        finals[1].2,
        Some(65536.0 * 2f64.powi(3)),
        "15 steps, doubling every 4"
    );
    assert_eq!(finals[0].1, finals[1].1, "losses and gradient norms");
    assert_eq!(finals[0].0, finals[1].0, "final weights");
}

/// f32 runs are not loss-scaled: no scale flags, no scale fields.
#[test]
fn loss_scale_flags_need_f16() {
    let data = dataset();
    let facts = ModelFacts {
        is_beit: false,
        fixed_image_size: Some(SIDE),
    };
    let flags = TrainFlags {
        loss_scale_init: Some(1024.0),
        ..TrainFlags::default()
    };
    let err = flags.resolve(&facts, 4, 80, "cpu").unwrap_err().to_string();
    assert!(err.contains("--precision f16"), "{err}");
    let flags = TrainFlags {
        precision: Some(clce_cli::train::Precision::F16),
        loss_scale_init: Some(0.5),
        ..TrainFlags::default()
    };
    let err = flags.resolve(&facts, 4, 80, "cpu").unwrap_err().to_string();
    assert!(err.contains("--loss-scale-init"), "{err}");
    let cfg = config(&data, |_| {});
    assert_eq!(cfg.loss_scaling, None);
    let dir = tempfile::tempdir().unwrap();
    let rd = RunDir::create(Some(&dir.path().join("run")), &cfg).unwrap();
    let net = StandIn::new(INPUTS, 4, 0);
    run(&net, &cfg, &data, &rd, &cross_entropy, Some(2)).unwrap();
    let text = std::fs::read_to_string(rd.metrics_path()).unwrap();
    assert!(
        text.contains("grad_norm") && !text.contains("loss_scale"),
        "{text}"
    );
}

#[test]
fn a_stop_request_finishes_the_step_and_saves() {
    let data = dataset();
    let cfg = config(&data, |_| {});
    let dir = tempfile::tempdir().unwrap();
    let rd = RunDir::create(Some(&dir.path().join("run")), &cfg).unwrap();
    let net = StandIn::new(INPUTS, 4, 0);
    let stop = AtomicBool::new(true);
    let session = Session {
        net: &net,
        cfg: &cfg,
        data: &data,
        augment: augment(),
        device: Device::Cpu,
        objective: &cross_entropy,
        run: &rd,
        stop: &stop,
        stop_after_steps: None,
        fewshot: None,
        distributed: None,
    };
    let outcome = train(&session, &mut Reporter::new(OutputMode::Quiet), None).unwrap();
    assert!(
        matches!(outcome, Outcome::Stopped { step: 1 }),
        "{outcome:?}"
    );
    let (state, _) = checkpoint::load(&rd).unwrap();
    assert_eq!((state.epoch, state.batch, state.step), (0, 1, 1));
    assert_eq!(StandIn::load(&rd.last_path()).values(), net.values());
}

#[test]
fn a_linear_probe_leaves_the_encoder_alone() {
    let data = dataset();
    let cfg = config(&data, |f| {
        f.freeze_backbone = true;
        f.epochs = Some(1);
    });
    let dir = tempfile::tempdir().unwrap();
    let rd = RunDir::create(Some(&dir.path().join("run")), &cfg).unwrap();
    let net = StandIn::new(INPUTS, 4, 0);
    let before = net.values();
    run(&net, &cfg, &data, &rd, &cross_entropy, None).unwrap();
    let after = net.values();
    assert_eq!(after[..2], before[..2], "hidden layer frozen");
    assert_ne!(after[2], before[2], "head trained");
}

#[test]
fn resuming_needs_a_checkpoint() {
    let data = dataset();
    let cfg = config(&data, |_| {});
    let dir = tempfile::tempdir().unwrap();
    let rd = RunDir::create(Some(&dir.path().join("run")), &cfg).unwrap();
    let msg = checkpoint::load(&rd).unwrap_err().to_string();
    assert!(msg.contains("no checkpoint"), "{msg}");
    assert!(msg.contains("--out"), "says how to start again: {msg}");
    // A run without a checkpoint has nothing to lose: its folder is reused, and says so.
    assert!(!rd.reused());
    let again = RunDir::create(Some(rd.root()), &cfg).unwrap();
    assert!(again.reused());
    // One with a checkpoint is never silently reused.
    std::fs::write(rd.last_path(), b"a model").unwrap();
    let msg = RunDir::create(Some(rd.root()), &cfg)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("--resume"), "{msg}");
    assert_eq!(std::fs::read(rd.last_path()).unwrap(), b"a model");
}

/// The objective of the gradient-check tests: cross-entropy plus a contrastive-style term on
/// the normalised projection, so both heads' paths are exercised.
fn mixed(out: &Output, labels: &[usize]) -> Result<Tensor> {
    let z = out.projection.l2_normalize(-1, 1e-12)?;
    let sim = z.matmul_t(&z, false, true)?.mul_scalar(2.0)?;
    let ce = out.logits.cross_entropy(labels, 0.0)?;
    Ok(ce.add(&sim.log_softmax(-1)?.mean_all()?.neg()?)?)
}

fn gradcheck_inputs(net: &StandIn) -> (Tensor, Vec<usize>) {
    let _ = net;
    let data = dataset();
    let batch = clce_cli::data::Loader::train(
        data.train.clone(),
        4,
        0,
        0,
        &AugmentConfig::clce(SIDE, NORM),
    )
    .unwrap()
    .next()
    .unwrap()
    .unwrap();
    (batch.to_tensor(&Device::Cpu).unwrap(), batch.labels)
}

/// Runs the gradient check of `net` (on the CPU in f32) against its f64 reference.
fn check_gradients_of(net: &StandIn, opts: &GradcheckOptions, calls: &mut usize) -> Report {
    let (x, labels) = gradcheck_inputs(net);
    let x64 = x.to_dtype(DType::F64).unwrap();
    let reference = net.f64_reference().unwrap();
    let loss = || mixed(&net.forward(&x, Mode::Eval)?, &labels);
    let reference_loss = || mixed(&reference.forward(&x64, Mode::Eval)?, &labels);
    let (params, reference_params) = (net.parameters(), reference.parameters());
    gradcheck::check(
        Side {
            params: &params,
            loss: &loss,
        },
        Side {
            params: &reference_params,
            loss: &reference_loss,
        },
        opts,
        &mut |_, _| *calls += 1,
    )
    .unwrap()
}

#[test]
fn the_gradient_check_passes_a_correct_model_and_leaves_it_untouched() {
    let net = StandIn::new(INPUTS, 4, 3);
    let before = net.values();
    let opts = GradcheckOptions {
        coords_per_tensor: 6,
        ..GradcheckOptions::default()
    };
    let mut calls = 0;
    let report = check_gradients_of(&net, &opts, &mut calls);
    eprintln!("{}", report.table());
    assert!(report.passed(), "{}", report.table());
    assert_eq!(report.rows.len(), 4, "one row per layer type");
    // head.bias has only 4 coordinates.
    assert_eq!(report.coords(), 3 * 6 + 4);
    assert_eq!(calls, 22);
    // f32 against f64 and f64 against differences agree far within the tolerance.
    assert!(
        report.max_device_error() < 1e-4 && report.max_difference_error() < 1e-6,
        "{}",
        report.table()
    );
    assert_eq!(net.values(), before, "parameters restored bit for bit");
    assert!(net.parameters().iter().all(|(_, p)| p.grad().is_none()));
}

#[test]
fn the_gradient_check_catches_a_wrong_backward_rule() {
    let mut net = StandIn::new(INPUTS, 4, 3);
    net.wrong_backward = true;
    let report = check_gradients_of(&net, &GradcheckOptions::default(), &mut 0);
    assert!(!report.passed());
    // The planted bug scales the hidden layer's gradient by 1.5: error 0.5 / 1.5 against the
    // differences, none against the f64 reference, which shares the rule.
    let hidden = report
        .rows
        .iter()
        .find(|r| r.layer_type == "hidden.weight")
        .unwrap();
    assert!(
        (hidden.difference_error - 1.0 / 3.0).abs() < 0.02,
        "{}",
        report.table()
    );
    assert!(hidden.device_error < 1e-4, "{}", report.table());
    let head = report
        .rows
        .iter()
        .find(|r| r.layer_type == "head.weight")
        .unwrap();
    assert!(head.passed(report.tolerance), "{}", report.table());
    assert!(matches!(
        report.into_result(),
        Err(TrainError::GradcheckFailed { .. })
    ));
}

#[test]
fn the_gradient_check_catches_a_wrong_device_kernel() {
    let mut net = StandIn::new(INPUTS, 4, 3);
    net.wrong_f32_kernel = true;
    let report = check_gradients_of(&net, &GradcheckOptions::default(), &mut 0);
    assert!(!report.passed(), "{}", report.table());
    let worst = report
        .rows
        .iter()
        .map(|r| r.device_error)
        .fold(0.0, f64::max);
    assert!(worst > 0.05, "{}", report.table());
    assert!(report.max_difference_error() < 1e-6, "{}", report.table());
}

/// A ReLU whose input sits right at its kink: the differences cross it, the check skips the
/// coordinate (counting it) rather than failing a correct gradient.
#[test]
fn the_gradient_check_skips_a_coordinate_whose_step_crosses_a_kink() {
    let x = Tensor::from_f64_slice(&[0.0, 0.7], [2], DType::F64, &Device::Cpu)
        .unwrap()
        .set_requires_grad(true);
    let params = vec![("w".to_string(), x.clone())];
    let loss = || Ok(x.relu()?.sum_all()?.mul_scalar(3.0)?);
    let side = Side {
        params: &params,
        loss: &loss,
    };
    let opts = GradcheckOptions {
        coords_per_tensor: 2,
        ..GradcheckOptions::default()
    };
    let report = gradcheck::check(side, side, &opts, &mut |_, _| {}).unwrap();
    assert!(report.passed(), "{}", report.table());
    assert_eq!(report.coords(), 2);
    assert_eq!(report.kinked(), 1, "{}", report.table());
}

#[test]
fn training_refuses_to_start_with_wrong_gradients() {
    let data = dataset();
    let cfg = config(&data, |f| f.no_gradcheck = false);
    let dir = tempfile::tempdir().unwrap();
    let rd = RunDir::create(Some(&dir.path().join("run")), &cfg).unwrap();
    let mut net = StandIn::new(INPUTS, 4, 0);
    net.wrong_backward = true;
    let before = net.values();
    let err = run(&net, &cfg, &data, &rd, &mixed, None).unwrap_err();
    assert!(matches!(err, TrainError::GradcheckFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("--no-gradcheck"));
    assert_eq!(net.values(), before, "not a single step taken");
    // The same run with a correct model checks and trains.
    let ok = StandIn::new(INPUTS, 4, 0);
    let rd2 = RunDir::create(Some(&dir.path().join("run2")), &cfg).unwrap();
    assert!(matches!(
        run(&ok, &cfg, &data, &rd2, &mixed, None).unwrap(),
        Outcome::Finished { .. }
    ));
}

/// A model whose logits are not finite gets no accuracy: an argmax over NaN would still
/// pick classes and report a number.
#[test]
fn evaluation_refuses_non_finite_logits() {
    let data = dataset();
    let net = StandIn::new(INPUTS, 4, 1);
    let views = clce_cli::train::eval::EvalViews {
        batch_size: 8,
        image_size: SIDE,
        norm: NORM,
    };
    let evaluate = |net: &StandIn| {
        clce_cli::train::eval::evaluate(net, &data.test, 4, &views, &Device::Cpu, &mut |_, _| {})
    };
    assert!(evaluate(&net).is_ok());
    net.poison_head();
    let msg = evaluate(&net).err().unwrap().to_string();
    assert!(msg.contains("NaN or infinite logits"), "{msg}");
}

/// --batch-size 1 scales the lr (7e-4 / 1024) below the default --min-lr: the default floor
/// follows it instead of refusing a flag the user never set; a given --min-lr above it names
/// the scaling.
#[test]
fn a_small_batch_does_not_trip_the_default_min_lr() {
    let data = dataset();
    let facts = ModelFacts {
        is_beit: false,
        fixed_image_size: Some(SIDE),
    };
    let resolve = |flags: TrainFlags| flags.resolve(&facts, 4, data.train.len(), "cpu");
    let flags = TrainFlags {
        model: Some("stand-in".into()),
        batch_size: Some(1),
        ..TrainFlags::default()
    };
    let cfg = resolve(flags.clone()).unwrap();
    assert!(cfg.min_lr <= cfg.lr, "{} > {}", cfg.min_lr, cfg.lr);
    let msg = resolve(TrainFlags {
        min_lr: Some(1e-6),
        ..flags
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        msg.contains("--min-lr") && msg.contains("--batch-size 1"),
        "{msg}"
    );
}
