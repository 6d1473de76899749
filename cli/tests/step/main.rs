//! The arithmetic of one training step (`trainer::StepCore`) in its variants.
//!
//! `--micro-batch K` (train/micro_batch.rs): a step's views in chunks of K give the whole
//! batch's gradient. BEiT (no BatchNorm, drop path on) matches the unchunked step for any K;
//! ResNet matches it with one chunk, and for smaller K a reference that records the chunks'
//! forwards on one tape (each chunk normalised by its own statistics) and differentiates the
//! whole-batch objective in one pass.
//!
//! `--precision f16` (engine autograd/half_saved.rs): the first step's gradients agree with
//! f32 to 1e-2 relative, globally and per tensor, on both models, CPU and GPU.
#[path = "../common/compare.rs"]
mod compare;
use clce_cli::train::micro_batch::forward_backward;
use clce_cli::train::model::{objective_for, random_model, Finetuned};
use clce_cli::train::network::{Mode, Network, Output};
use clce_cli::train::trainer::StepCore;
use clce_cli::train::{ModelFacts, Precision, TrainConfig, TrainFlags};
use clce_engine::loss::LossKind;
use clce_engine::{DType, Device, Tensor};
use compare::relative;

const IMAGES: usize = 7;

fn config(model: &str, loss: &str) -> TrainConfig {
    let is_beit = model.starts_with("beit");
    let flags = TrainFlags {
        model: Some(model.into()),
        batch_size: Some(IMAGES),
        image_size: Some(32),
        loss: Some(loss.into()),
        drop_path: is_beit.then_some(0.3),
        seed: Some(3),
        ..TrainFlags::default()
    };
    let facts = ModelFacts {
        is_beit,
        fixed_image_size: None,
    };
    flags.resolve(&facts, 5, 1000, "test").unwrap()
}

/// The views of a batch as the loader lays them out: view i and view i + B are one image.
fn labels() -> Vec<usize> {
    (0..2 * IMAGES).map(|i| (i % IMAGES) % 5).collect()
}

/// What one step leaves: the loss, the logits, every parameter's gradient and the model's
/// running state (BatchNorm statistics, then counters).
struct Step {
    loss: f64,
    logits: Vec<f32>,
    /// None where the objective does not reach a parameter (`--loss ce` and the projection).
    grads: Vec<(String, Option<Vec<f32>>)>,
    statistics: Vec<Vec<f32>>,
    counters: Vec<Vec<f32>>,
}

/// Runs `f` with the step of `cfg` on a fresh model (the same weights every time) and
/// collects what it leaves.
fn step(
    cfg: &TrainConfig,
    device: &Device,
    f: impl FnOnce(&StepCore, &Tensor) -> (f64, Tensor),
) -> Step {
    let net = Finetuned {
        model: random_model(cfg, device).unwrap(),
        frozen_backbone: false,
    };
    let objective = objective_for(cfg).unwrap();
    let core = StepCore {
        net: &net,
        objective: &objective,
        mode: mode(),
        micro_batch: cfg.micro_batch,
        precision: cfg.precision,
        clip_grad: None,
        lr: 0.0,
        distributed: None,
    };
    let x = Tensor::randn([2 * IMAGES, 3, 32, 32], 1.0, 11, DType::F32, device).unwrap();
    let (loss, logits) = f(&core, &x);
    let values =
        |ts: Vec<Tensor>| -> Vec<Vec<f32>> { ts.iter().map(|t| t.to_vec_f32().unwrap()).collect() };
    let running = net.running_state();
    Step {
        loss,
        logits: logits.to_vec_f32().unwrap(),
        grads: net
            .parameters()
            .into_iter()
            .map(|(name, t)| (name, t.grad().map(|g| g.to_vec_f32().unwrap())))
            .collect(),
        statistics: values(running.statistics),
        counters: values(running.counters),
    }
}

fn mode() -> Mode {
    Mode::train(42)
}

/// The plain step: one forward of every view, the objective, one backward.
fn unchunked(cfg: &TrainConfig, device: &Device) -> Step {
    step(cfg, device, |core, x| {
        let out = core.recorded_forward(x, mode()).unwrap();
        let loss = (core.objective)(&out, &labels()).unwrap();
        loss.backward().unwrap();
        (loss.to_scalar().unwrap(), out.logits)
    })
}

fn chunked(cfg: &TrainConfig, device: &Device, k: usize) -> Step {
    step(cfg, device, |core, x| {
        let (loss, logits) = forward_backward(core, k, x, &labels(), None).unwrap();
        (loss.to_scalar().unwrap(), logits)
    })
}

/// Every chunk's forward recorded on one tape, the whole-batch objective on their
/// concatenated outputs, one backward: what BatchNorm with per-chunk statistics gives.
fn per_chunk_reference(cfg: &TrainConfig, device: &Device, k: usize) -> Step {
    step(cfg, device, |core, x| {
        let outs: Vec<Output> = (0..2 * IMAGES)
            .step_by(k)
            .map(|start| {
                let len = k.min(2 * IMAGES - start);
                let chunk = x.narrow(0, start, len).unwrap();
                core.net.forward(&chunk, mode().from_view(start)).unwrap()
            })
            .collect();
        let cat = |part: fn(&Output) -> &Tensor| {
            let parts: Vec<Tensor> = outs.iter().map(|o| part(o).clone()).collect();
            Tensor::concat(&parts, 0).unwrap()
        };
        let whole = Output {
            pooled: cat(|o| &o.pooled),
            logits: cat(|o| &o.logits),
            projection: cat(|o| &o.projection),
        };
        let loss = (core.objective)(&whole, &labels()).unwrap();
        loss.backward().unwrap();
        (loss.to_scalar().unwrap(), whole.logits)
    })
}

fn assert_close(what: &str, got: &Step, want: &Step, tol: f64) {
    compare::assert_close(what, got.outcome(), want.outcome(), tol);
}

impl Step {
    fn outcome(&self) -> compare::Outcome<'_> {
        compare::Outcome {
            loss: self.loss,
            logits: &self.logits,
            grads: &self.grads,
        }
    }
}

#[test]
fn beit_gradients_do_not_depend_on_the_micro_batch() {
    let cfg = config("beit-tiny", "clce");
    let device = Device::Cpu;
    let whole = unchunked(&cfg, &device);
    let views = 2 * IMAGES;
    for k in [1, 2, 3, 5, 13, views, views + 3] {
        assert_close(
            &format!("K = {k}"),
            &chunked(&cfg, &device, k),
            &whole,
            1e-5,
        );
    }
}

#[test]
fn every_loss_gets_the_whole_batch_gradient() {
    for kind in LossKind::ALL {
        let cfg = config("beit-tiny", kind.name());
        let device = Device::Cpu;
        assert_close(
            kind.name(),
            &chunked(&cfg, &device, 4),
            &unchunked(&cfg, &device),
            1e-5,
        );
    }
}

#[test]
fn resnet_with_one_chunk_is_the_unchunked_step() {
    let cfg = config("resnet-tiny", "clce");
    let device = Device::Cpu;
    let (got, want) = (chunked(&cfg, &device, 2 * IMAGES), unchunked(&cfg, &device));
    assert_eq!(got.loss, want.loss);
    assert_eq!(got.logits, want.logits);
    assert_eq!(got.grads, want.grads);
    assert_eq!(got.statistics, want.statistics);
    assert_eq!(got.counters, want.counters);
}

#[test]
fn resnet_chunks_use_their_own_batch_statistics() {
    let cfg = config("resnet-tiny", "clce");
    let device = Device::Cpu;
    let whole = unchunked(&cfg, &device);
    for k in [4, 7, 5] {
        let got = chunked(&cfg, &device, k);
        assert_close(
            &format!("K = {k}"),
            &got,
            &per_chunk_reference(&cfg, &device, k),
            1e-5,
        );
        // Not the unchunked step: each chunk was normalised by its own statistics.
        assert!(relative(&got.logits, &whole.logits) > 1e-3, "K = {k}");
        // Every counter advanced once, as in an unchunked step.
        assert_eq!(got.counters, whole.counters, "K = {k}");
    }
    // The stem's BatchNorm sees conv1 of the same views whatever K: with two equal chunks
    // its running mean moves to the whole batch's mean (the mean of the chunks' means).
    let halves = chunked(&cfg, &device, IMAGES);
    assert!(relative(&halves.statistics[0], &whole.statistics[0]) < 1e-5);
}

#[test]
fn gpu_chunks_match_the_unchunked_step() {
    let Some(gpu) = clce_engine::gpu::testing::test_device() else {
        return;
    };
    let cfg = config("beit-tiny", "clce");
    let whole = unchunked(&cfg, &gpu);
    for k in [3, 8] {
        assert_close(&format!("K = {k}"), &chunked(&cfg, &gpu, k), &whole, 1e-5);
    }
    let cfg = config("resnet-tiny", "clce");
    assert_close(
        "resnet K = 5",
        &chunked(&cfg, &gpu, 5),
        &per_chunk_reference(&cfg, &gpu, 5),
        1e-5,
    );
}

fn in_f16(cfg: &TrainConfig) -> TrainConfig {
    TrainConfig {
        precision: Precision::F16,
        ..cfg.clone()
    }
}

fn devices() -> Vec<Device> {
    let mut devices = vec![Device::Cpu];
    devices.extend(clce_engine::gpu::testing::test_device());
    devices
}

#[test]
fn f16_saved_activations_give_the_f32_gradients_to_1e_2() {
    for model in ["beit-tiny", "resnet-tiny"] {
        let cfg = config(model, "clce");
        for device in devices() {
            let (full, half) = (unchunked(&cfg, &device), unchunked(&in_f16(&cfg), &device));
            let all = |s: &Step| -> Vec<f32> {
                s.grads
                    .iter()
                    .flat_map(|(_, g)| g.clone().unwrap())
                    .collect()
            };
            let global = relative(&all(&half), &all(&full));
            let (worst, name) = half
                .grads
                .iter()
                .zip(&full.grads)
                .filter_map(|((n, h), (_, f))| Some((relative(h.as_ref()?, f.as_ref()?), n)))
                .fold(
                    (0.0, ""),
                    |(r, n), (r2, n2)| if r2 > r { (r2, n2) } else { (r, n) },
                );
            eprintln!(
                "{model} on {device}: f16 vs f32 gradients, global relative {global:.2e}, \
                 worst tensor {name} {worst:.2e}"
            );
            assert!(global > 0.0, "{model}: nothing was stored in f16");
            assert_close(&format!("{model} on {device}, f16"), &half, &full, 1e-2);
        }
    }
}

#[test]
fn f16_micro_batches_give_the_f16_whole_batch_gradient() {
    let cfg = in_f16(&config("beit-tiny", "clce"));
    for device in devices() {
        assert_close(
            &format!("f16 K = 5 on {device}"),
            &chunked(&cfg, &device, 5),
            &unchunked(&cfg, &device),
            1e-5,
        );
    }
}

/// `--precision f16`'s loss scale enters a micro-batched step once, through the cached
/// outputs' gradients: every parameter's gradient is the unscaled one times the scale,
/// exactly (a power of two), on the CPU and the GPU.
#[test]
fn a_loss_scale_multiplies_the_micro_batched_gradients_exactly() {
    let cfg = in_f16(&config("beit-tiny", "clce"));
    for device in devices() {
        let scale = Tensor::from_vec(vec![1024f32], [1], &device).unwrap();
        let scaled = step(&cfg, &device, |core, x| {
            let (loss, logits) = forward_backward(core, 5, x, &labels(), Some(&scale)).unwrap();
            (loss.to_scalar().unwrap(), logits)
        });
        let plain = chunked(&cfg, &device, 5);
        assert_eq!(
            scaled.loss, plain.loss,
            "{device}: the loss itself is not scaled"
        );
        let mut compared = 0;
        for ((name, s), (_, p)) in scaled.grads.iter().zip(&plain.grads) {
            let (Some(s), Some(p)) = (s, p) else { continue };
            let times: Vec<f32> = p.iter().map(|v| v * 1024.0).collect();
            assert_eq!(s, &times, "{device}: {name}");
            compared += 1;
        }
        assert!(compared > 10, "{device}: {compared} gradients");
    }
}
