//! Helpers for tests that run on a GPU, in this crate and in the ones built on it.
use crate::autograd::no_grad;
use crate::gradcheck::Case;
use crate::{DType, Device, Result, Tensor};

/// The GPU tests run on: `gpu:0` (lavapipe on machines without a GPU). With no adapter the
/// tests skip (returning None) unless `CLCE_REQUIRE_GPU=1`, which makes them fail instead,
/// so that CI with a GPU cannot pass by skipping.
pub fn test_device() -> Option<Device> {
    let required = std::env::var("CLCE_REQUIRE_GPU").is_ok_and(|v| v == "1");
    match Device::gpu(0) {
        Ok(d) => Some(d),
        Err(e) if required => panic!("CLCE_REQUIRE_GPU=1 but no GPU could be opened: {e}"),
        Err(e) => {
            eprintln!("GPU tests skipped: no adapter ({e})");
            None
        }
    }
}

/// `test_device`, for tests of F16 tensors: None (skipping, with a message) where the adapter
/// lacks shader-f16, unless `CLCE_REQUIRE_GPU=1`, which then fails, since lavapipe, the
/// adapter of machines without a GPU, has it.
pub fn f16_test_device() -> Option<Device> {
    let device = test_device()?;
    let Device::Gpu(gpu) = &device else {
        unreachable!("test_device opens a GPU")
    };
    if gpu.has_shader_f16() {
        return Some(device);
    }
    if std::env::var("CLCE_REQUIRE_GPU").is_ok_and(|v| v == "1") {
        panic!("CLCE_REQUIRE_GPU=1 but {gpu} has no shader-f16");
    }
    eprintln!("F16 tests skipped: {gpu} has no shader-f16");
    None
}

/// Runs a case on the CPU and on `gpu`, in f32 with the same inputs, and compares the
/// outputs and (through the loss sum(f(x) * r)) the gradients of every input that is not
/// frozen. Returns the largest difference relative to max(|CPU value|, 1).
pub fn max_error_against_cpu(gpu: &Device, case: &Case) -> Result<f64> {
    let values = case.input_values()?;
    let run = |device: &Device| -> Result<Vec<Vec<f64>>> {
        let inputs: Vec<Tensor> = values
            .iter()
            .zip(&case.shapes)
            .enumerate()
            .map(|(i, (v, s))| {
                let t = Tensor::from_f64_slice(v, s.as_slice(), DType::F32, device)?;
                Ok(if case.is_frozen(i) {
                    t
                } else {
                    t.set_requires_grad(true)
                })
            })
            .collect::<Result<_>>()?;
        let y = case.apply(&inputs)?;
        let r = Tensor::randn(y.shape().clone(), 1.0, 0x5eed, DType::F32, device)?;
        let loss = y.mul(&r)?.sum_all()?;
        if loss.requires_grad() {
            loss.backward()?;
        }
        let _g = no_grad();
        let mut results = vec![y.to_vec_f64()?];
        for t in &inputs {
            results.push(match t.grad() {
                Some(g) => g.to_vec_f64()?,
                None => vec![0.0; t.numel()],
            });
        }
        Ok(results)
    };
    let want = run(&Device::Cpu)?;
    let got = run(gpu)?;
    let mut worst: f64 = 0.0;
    for (w, g) in want.iter().zip(&got) {
        if w.len() != g.len() {
            return Ok(f64::INFINITY);
        }
        for (w, g) in w.iter().zip(g) {
            let e = match (w.is_nan(), g.is_nan()) {
                (true, true) => 0.0,
                (false, false) => (w - g).abs() / w.abs().max(1.0),
                _ => f64::INFINITY,
            };
            worst = worst.max(e);
        }
    }
    Ok(worst)
}

/// Asserts that every case agrees between the CPU and the GPU within `tolerance`, and that
/// the GPU's gradients pass the finite-difference check of the gradcheck cases.
pub fn assert_gpu_agrees(gpu: &Device, cases: &[Case], tolerance: f64) {
    for case in cases {
        let e = max_error_against_cpu(gpu, case)
            .unwrap_or_else(|err| panic!("{} {}: {err}", case.name, case.shapes_string()));
        assert!(
            e <= tolerance,
            "{} {}: GPU differs from CPU by {e:.3e} (tolerance {tolerance:.0e})",
            case.name,
            case.shapes_string()
        );
    }
}

/// Runs gradient-check cases with the analytic gradient computed on `gpu`.
pub fn assert_gradients_pass_on(gpu: &Device, cases: &[Case]) {
    for case in cases {
        let report = case
            .run(gpu)
            .unwrap_or_else(|err| panic!("{} {}: {err}", case.name, case.shapes_string()));
        assert!(report.passed(), "{}", report.row());
    }
}

/// A GPU device of the test's own (adapter 0, opened anew), for tests that count what a
/// device does (`counters`): other tests running at the same time share `test_device`'s.
/// Skips or fails as `test_device` does.
pub fn private_test_device() -> Option<Device> {
    test_device()?;
    Some(Device::Gpu(
        crate::gpu::GpuDevice::create(0).expect("adapter 0 opened a moment ago"),
    ))
}
