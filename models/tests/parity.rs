//! The models against PyTorch: the tiny fixtures hold inputs, outputs and gradients computed
//! by the real timm and transformers models (see the fixtures' README).
mod common;

use clce_engine::{DType, Device, Tensor};
use clce_models::checkpoint::naming::{transformers_to_timm, TimmName};
use clce_models::checkpoint::{Checkpoint, Values};
use clce_models::{LoadOptions, Mode, Model, Naming};
use common::model_fixture;

struct Io(Checkpoint);

impl Io {
    fn read(model: &str) -> Io {
        Io(Checkpoint::read(model_fixture(&format!("{model}.io.safetensors"))).unwrap())
    }
    fn has(&self, name: &str) -> bool {
        self.0.tensors.contains_key(name)
    }
    fn values(&self, name: &str) -> Vec<f32> {
        match &self.0.tensors[name].values {
            Values::F32(v) => v.clone(),
            Values::I64(_) => panic!("{name} is not float"),
        }
    }
    fn tensor(&self, name: &str) -> Tensor {
        let shape = self.0.tensors[name].shape.clone();
        Tensor::from_vec(self.values(name), shape, &Device::Cpu).unwrap()
    }
    /// Names of the parameter gradients recorded for `mode` ("eval" or "train").
    fn param_grads(&self, mode: &str) -> Vec<String> {
        let prefix = format!("{mode}.grad.param.");
        self.0
            .tensors
            .keys()
            .filter_map(|n| n.strip_prefix(&prefix).map(str::to_string))
            .collect()
    }
}

/// ||ours - reference|| / ||reference||.
fn rel_err(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (&a, &b) in ours.iter().zip(reference) {
        diff += (a as f64 - b as f64).powi(2);
        norm += (b as f64).powi(2);
    }
    (diff / norm.max(1e-30)).sqrt()
}

fn load(file: &str) -> (Model, Naming) {
    let (model, report) = Model::load(
        model_fixture(&format!("{file}.safetensors")),
        &LoadOptions::default(),
    )
    .unwrap();
    (model, report.naming)
}

/// Our gradient of the file's parameter `name` (transformers' query/key/value weights are
/// row blocks of our fused qkv weight).
fn param_grad(model: &Model, naming: Naming, name: &str) -> Vec<f32> {
    let target = match naming {
        Naming::Timm => TimmName::Is(name.to_string()),
        Naming::Transformers => transformers_to_timm(model.config().kind(), name).unwrap(),
    };
    let grad = |n: &str| {
        model
            .store()
            .get(n)
            .unwrap_or_else(|| panic!("no parameter {n}"))
            .grad()
            .unwrap_or_else(|| panic!("{n} got no gradient"))
    };
    match target {
        TimmName::Is(n) => grad(&n).to_vec_f32().unwrap(),
        TimmName::QkvPart { block, part } => {
            let g = grad(&format!("blocks.{block}.attn.qkv.weight"));
            let d = g.dims()[0] / 3;
            g.narrow(0, part * d, d).unwrap().to_vec_f32().unwrap()
        }
    }
}

/// The ResNet fixture file was written after its train-mode pass: its BatchNorms count one
/// batch (`num_batches_tracked` = 1) and their running statistics S1 = (1 - m) S0 + m B
/// include the batch statistics B of the fixture's input, while the eval references were
/// computed before, with S0. A second train pass on a copy gives S2 = (1 - m) S1 + m B, so
/// S0 = ((2 - m) S1 - S2) / (1 - m) recovers the statistics the references used.
fn undo_the_fixture_train_pass(model: &Model, file: &str, x: &Tensor) {
    let counter = model.store().get("bn1.num_batches_tracked").unwrap();
    assert_eq!(
        counter.to_scalar().unwrap(),
        1.0,
        "the fixture counts one batch"
    );
    let (copy, _) = load(file);
    copy.forward(x, Mode::train(0)).unwrap();
    let m = 0.1;
    for ((name, s1), (_, s2)) in model.buffers().zip(copy.buffers()) {
        if name.ends_with("running_mean") || name.ends_with("running_var") {
            let s0 = s1.mul_scalar(2.0 - m).unwrap().sub(s2).unwrap();
            s1.assign(&s0.mul_scalar(1.0 / (1.0 - m)).unwrap()).unwrap();
        }
    }
}

/// Runs the fixture's input through the model in `mode`, checks logits (and pooled features
/// when recorded) to 1e-4 and the gradients of sum(logits * R) to 1e-3, relative.
fn check(file: &str, mode_name: &str, mode: Mode) {
    let (model, naming) = load(file);
    let io = Io::read(file);
    if file.starts_with("resnet") && !mode.is_train() {
        undo_the_fixture_train_pass(&model, file, &io.tensor("input"));
    }
    let x = io.tensor("input").set_requires_grad(true);
    let out = model.forward(&x, mode).unwrap();
    let logits_err = rel_err(
        &out.logits.to_vec_f32().unwrap(),
        &io.values(&format!("{mode_name}.logits")),
    );
    eprintln!("{file} {mode_name}: logits rel err {logits_err:.1e}");
    assert!(
        logits_err < 1e-4,
        "{file} {mode_name} logits: {logits_err:.2e}"
    );
    let pooled = format!("{mode_name}.pooled");
    if io.has(&pooled) {
        let err = rel_err(&out.pooled.to_vec_f32().unwrap(), &io.values(&pooled));
        eprintln!("{file} {mode_name}: pooled rel err {err:.1e}");
        assert!(err < 1e-4, "{file} {mode_name} pooled: {err:.2e}");
    }

    let r = io.tensor("grad.projection");
    out.logits
        .mul(&r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let gx = x.grad().unwrap().to_vec_f32().unwrap();
    let err = rel_err(&gx, &io.values(&format!("{mode_name}.grad.input")));
    eprintln!("{file} {mode_name}: input gradient rel err {err:.1e}");
    assert!(err < 1e-3, "{file} {mode_name} grad input: {err:.2e}");
    let names = io.param_grads(mode_name);
    assert!(!names.is_empty());
    for name in names {
        let ours = param_grad(&model, naming, &name);
        let err = rel_err(&ours, &io.values(&format!("{mode_name}.grad.param.{name}")));
        eprintln!("{file} {mode_name}: gradient of {name} rel err {err:.1e}");
        assert!(err < 1e-3, "{file} {mode_name} grad {name}: {err:.2e}");
    }
}

#[test]
fn beit_timm_matches_pytorch_in_eval_mode() {
    check("beit_timm_tiny", "eval", Mode::Eval);
}

#[test]
fn beit_transformers_matches_pytorch_in_eval_mode() {
    check("beit_hf_tiny", "eval", Mode::Eval);
}

#[test]
fn resnet_matches_pytorch_in_eval_mode() {
    check("resnet_timm_tiny", "eval", Mode::Eval);
}

#[test]
fn resnet_matches_pytorch_in_train_mode() {
    check("resnet_timm_tiny", "train", Mode::train(0));
}

/// Gradients of every parameter and the input after one backward of sum(logits * R) +
/// sum(projection), and the running statistics afterwards.
fn step(model: &Model, x: &Tensor, mode: Mode) -> Vec<(String, Vec<f32>)> {
    model.store().zero_grad();
    let x = x.detach().set_requires_grad(true);
    let out = model.forward(&x, mode).unwrap();
    let r = Tensor::randn(out.logits.shape().clone(), 1.0, 9, DType::F32, x.device()).unwrap();
    let loss = out
        .logits
        .mul(&r)
        .unwrap()
        .sum_all()
        .unwrap()
        .add(&out.projection.sum_all().unwrap())
        .unwrap();
    loss.backward().unwrap();
    let mut grads = vec![("input".to_string(), x.grad().unwrap().to_vec_f32().unwrap())];
    for (name, t) in model.parameters() {
        grads.push((name.to_string(), t.grad().unwrap().to_vec_f32().unwrap()));
    }
    for (name, t) in model.buffers() {
        grads.push((name.to_string(), t.to_vec_f32().unwrap()));
    }
    grads
}

#[test]
fn activation_checkpointing_gives_the_same_gradients() {
    checkpointing_gives_the_same_gradients_on(&Device::Cpu);
}

#[test]
fn activation_checkpointing_gives_the_same_gradients_on_the_gpu() {
    if let Some(gpu) = clce_engine::gpu::testing::test_device() {
        checkpointing_gives_the_same_gradients_on(&gpu);
    }
}

/// Checkpointed and plain steps on `device`, drop path on: the stem and every block are
/// re-run in the backward pass with the same masks and the same batch statistics.
fn checkpointing_gives_the_same_gradients_on(device: &Device) {
    for (file, mode) in [
        ("resnet_timm_tiny", Mode::train(5)),
        ("resnet_timm_tiny", Mode::Eval),
        ("beit_timm_tiny", Mode::train(5)),
    ] {
        let opts = LoadOptions {
            drop_path_rate: 0.3,
            device: device.clone(),
            ..LoadOptions::default()
        };
        let path = model_fixture(&format!("{file}.safetensors"));
        let x = Io::read(file).tensor("input").to_device(device).unwrap();
        let (plain, _) = Model::load(&path, &opts).unwrap();
        let (mut ckpt, _) = Model::load(&path, &opts).unwrap();
        ckpt.set_activation_checkpointing(true);
        let expected = step(&plain, &x, mode);
        let got = step(&ckpt, &x, mode);
        assert_eq!(expected.len(), got.len());
        for ((name, a), (_, b)) in expected.iter().zip(&got) {
            // The same ops on the same values: equal to the last bit.
            assert_eq!(a, b, "{file} {mode:?}: {name}");
        }
        if mode.is_train() && file.starts_with("resnet") {
            // Each BatchNorm counted the batch once (the file says 1 before), not once more
            // per re-run: in the blocks and in the stem.
            for name in [
                "layer1.0.bn1.num_batches_tracked",
                "bn1.num_batches_tracked",
            ] {
                let counter = ckpt.store().get(name).unwrap();
                assert_eq!(counter.to_scalar().unwrap(), 2.0, "{name}");
            }
        }
    }
}

#[test]
fn drop_path_depends_on_the_step_seed_only_in_train_mode() {
    let opts = LoadOptions {
        drop_path_rate: 0.5,
        ..LoadOptions::default()
    };
    let (model, _) = Model::load(model_fixture("beit_timm_tiny.safetensors"), &opts).unwrap();
    let x = Io::read("beit_timm_tiny").tensor("input");
    let logits = |mode| {
        let _g = clce_engine::no_grad();
        model
            .forward(&x, mode)
            .unwrap()
            .logits
            .to_vec_f32()
            .unwrap()
    };
    assert_eq!(logits(Mode::train(1)), logits(Mode::train(1)));
    assert_ne!(logits(Mode::train(1)), logits(Mode::train(2)));
    assert_eq!(logits(Mode::Eval), logits(Mode::Eval));
    assert_ne!(logits(Mode::Eval), logits(Mode::train(1)));
}

#[test]
fn outputs_have_the_documented_shapes() {
    let (model, _) = load("beit_hf_tiny");
    let x = Io::read("beit_hf_tiny").tensor("input");
    let out = model.forward(&x, Mode::Eval).unwrap();
    assert_eq!(out.pooled.dims(), &[2, 64]);
    assert_eq!(out.logits.dims(), &[2, 10]);
    assert_eq!(out.projection.dims(), &[2, 128]);
    let wrong = Tensor::zeros([1, 3, 48, 48], DType::F32, &Device::Cpu).unwrap();
    let err = model.forward(&wrong, Mode::Eval).err().unwrap().to_string();
    assert!(err.contains("[N, 3, 32, 32]"), "{err}");
}
