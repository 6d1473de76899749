//! Helpers for tests that run on a GPU, in this crate and in the ones built on it.
use crate::autograd::no_grad;
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

/// Runs `f` on the CPU and on `gpu` with the same random f32 inputs of `shapes` (seeded by
/// `seed`), and compares the outputs and, through the projection loss sum(f(x) * r), the
/// gradients of every input. Returns the largest error relative to max(|cpu value|, 1).
pub fn max_error_against_cpu(
    gpu: &Device,
    shapes: &[&[usize]],
    seed: u64,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<f64> {
    let run = |device: &Device| -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
        let inputs: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let t = Tensor::randn(*s, 1.0, seed + i as u64, DType::F32, &Device::Cpu)?;
                Ok(t.to_device(device)?.set_requires_grad(true))
            })
            .collect::<Result<_>>()?;
        let y = f(&inputs)?;
        let r = Tensor::randn(y.shape().clone(), 1.0, seed ^ 0x5eed, DType::F32, device)?;
        let loss = y.mul(&r)?.sum_all()?;
        if loss.requires_grad() {
            loss.backward()?;
        }
        let _g = no_grad();
        let grads = inputs
            .iter()
            .map(|t| match t.grad() {
                Some(g) => g.to_vec_f64(),
                None => Ok(vec![0.0; t.numel()]),
            })
            .collect::<Result<_>>()?;
        Ok((y.to_vec_f64()?, grads))
    };
    let (want_y, want_g) = run(&Device::Cpu)?;
    let (got_y, got_g) = run(gpu)?;
    let mut worst: f64 = 0.0;
    let mut compare = |want: &[f64], got: &[f64]| {
        if want.len() != got.len() {
            worst = f64::INFINITY;
            return;
        }
        for (w, g) in want.iter().zip(got) {
            let e = (w - g).abs() / w.abs().max(1.0);
            // NaN on one side only is an error; NaN on both is agreement.
            worst = worst.max(if e.is_nan() && w.is_nan() != g.is_nan() {
                f64::INFINITY
            } else if e.is_nan() {
                0.0
            } else {
                e
            });
        }
    };
    compare(&want_y, &got_y);
    for (w, g) in want_g.iter().zip(&got_g) {
        compare(w, g);
    }
    Ok(worst)
}
