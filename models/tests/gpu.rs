//! The models on a GPU against the same models on the CPU: the model code is the same, only
//! the device differs. Tiny fixtures, so that this runs on a software adapter in CI.
mod common;

use clce_engine::gpu::testing::test_device;
use clce_engine::{DType, Device, Tensor};
use clce_models::{LoadOptions, Mode, Model};
use common::model_fixture;

/// Logits, projection, every parameter gradient and every buffer after one forward and
/// backward of sum(logits * R) + sum(projection) on `device`.
fn step(file: &str, device: &Device, mode: Mode) -> Vec<(String, Vec<f32>)> {
    let opts = LoadOptions {
        device: device.clone(),
        drop_path_rate: 0.2,
        ..LoadOptions::default()
    };
    let (model, _) = Model::load(model_fixture(&format!("{file}.safetensors")), &opts).unwrap();
    let x = Tensor::randn([2, 3, 32, 32], 1.0, 3, DType::F32, &Device::Cpu)
        .unwrap()
        .to_device(device)
        .unwrap()
        .set_requires_grad(true);
    let out = model.forward(&x, mode).unwrap();
    let r = Tensor::randn(out.logits.shape().clone(), 1.0, 9, DType::F32, &Device::Cpu)
        .unwrap()
        .to_device(device)
        .unwrap();
    let loss = out
        .logits
        .mul(&r)
        .unwrap()
        .sum_all()
        .unwrap()
        .add(&out.projection.sum_all().unwrap())
        .unwrap();
    loss.backward().unwrap();
    let mut values = vec![
        ("logits".to_string(), out.logits.to_vec_f32().unwrap()),
        (
            "projection".to_string(),
            out.projection.to_vec_f32().unwrap(),
        ),
        (
            "input gradient".to_string(),
            x.grad().unwrap().to_vec_f32().unwrap(),
        ),
    ];
    for (name, t) in model.parameters() {
        let g = t.grad().unwrap_or_else(|| panic!("{name} got no gradient"));
        values.push((format!("gradient of {name}"), g.to_vec_f32().unwrap()));
    }
    for (name, t) in model.buffers() {
        values.push((name.to_string(), t.to_vec_f32().unwrap()));
    }
    values
}

/// ||a - b|| / ||b||.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        diff += (x as f64 - y as f64).powi(2);
        norm += (y as f64).powi(2);
    }
    (diff / norm.max(1e-30)).sqrt()
}

fn assert_same_on_gpu(file: &str, mode: Mode) {
    let Some(gpu) = test_device() else { return };
    let want = step(file, &Device::Cpu, mode);
    let got = step(file, &gpu, mode);
    // f32 rounding differs between the devices (summation orders, fma). Train-mode BatchNorm
    // over the tiny ResNet's last stage sees 2 values per channel (batch 2, 1x1 pixels); its
    // backward cancels almost everything and magnifies those differences from ~1e-5 in the
    // logits to ~4e-4 in every gradient behind it.
    let tolerance = if mode.is_train() { 1e-3 } else { 1e-4 };
    assert_eq!(want.len(), got.len());
    for ((name, w), (_, g)) in want.iter().zip(&got) {
        assert_eq!(w.len(), g.len(), "{file} {mode:?} {name}");
        let err = rel_err(g, w);
        assert!(
            err < tolerance,
            "{file} {mode:?} {name}: GPU vs CPU rel err {err:.2e}"
        );
    }
}

#[test]
fn beit_runs_the_same_on_the_gpu() {
    assert_same_on_gpu("beit_timm_tiny", Mode::Eval);
    assert_same_on_gpu("beit_timm_tiny", Mode::train(4));
}

#[test]
fn resnet_runs_the_same_on_the_gpu() {
    assert_same_on_gpu("resnet_timm_tiny", Mode::Eval);
    assert_same_on_gpu("resnet_timm_tiny", Mode::train(4));
}
