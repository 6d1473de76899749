//! The step guard: the gradient norm, the clip factor and the first bad step, the same on
//! the CPU and on a GPU, and AdamW under it.
use super::set_grad;
use crate::gpu::testing::test_device;
use crate::optim::{AdamW, AdamWConfig, Optimizer, ParamGroup, StepGuard};
use crate::{DType, Device, Tensor};

/// Awkward sizes: one element, primes, more than a workgroup, not a multiple of 256; nine
/// of them, so that the GPU's sums of squares (seven per launch) take two launches.
const SHAPES: [&[usize]; 9] = [
    &[1],
    &[7],
    &[257],
    &[5, 67],
    &[1031],
    &[3, 3],
    &[2, 129],
    &[1, 1, 5],
    &[300],
];

/// One group holding every parameter.
fn group(ps: &[Tensor]) -> Vec<ParamGroup> {
    let named = ps.iter().enumerate();
    vec![named.fold(ParamGroup::new(1.0, 0.05), |g, (i, p)| {
        g.with(format!("p{i}"), p)
    })]
}

fn params(device: &Device) -> Vec<Tensor> {
    SHAPES
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Tensor::randn(*s, 1.0, 40 + i as u64, DType::F32, &Device::Cpu)
                .unwrap()
                .to_device(device)
                .unwrap()
                .set_requires_grad(true)
        })
        .collect()
}

fn give_grads(ps: &[Tensor], step: u64, scale: f64) {
    for (i, p) in ps.iter().enumerate() {
        let g = Tensor::randn(
            p.shape().clone(),
            scale,
            7 * step + i as u64,
            DType::F64,
            &Device::Cpu,
        )
        .unwrap()
        .to_vec_f64()
        .unwrap();
        set_grad(p, &g);
    }
}

fn scalar(v: f64, device: &Device) -> Tensor {
    Tensor::from_f64_slice(&[v], [1], DType::F32, device).unwrap()
}

/// Three guarded AdamW steps with `max_norm`; the guard's norms and the final parameters.
fn run(device: &Device, max_norm: Option<f64>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let ps = params(device);
    let mut opt = AdamW::new(group(&ps), AdamWConfig::default()).unwrap();
    let mut guard = StepGuard::new(device).unwrap();
    let mut norms = Vec::new();
    for step in 1..=3 {
        give_grads(&ps, step, 1.0);
        guard
            .check(step as usize, &scalar(0.5, device), &ps, max_norm)
            .unwrap();
        opt.step_guarded(0.01, &guard).unwrap();
        let report = guard.read().unwrap();
        assert_eq!(report.first_bad, None);
        norms.push(report.grad_norm);
    }
    (norms, ps.iter().map(|p| p.to_vec_f64().unwrap()).collect())
}

#[test]
fn the_guard_and_guarded_adamw_on_a_gpu_match_the_cpu() {
    let Some(gpu) = test_device() else { return };
    // The norm of these gradients is about 40: 5 clips, 1e3 does not.
    for max_norm in [None, Some(5.0), Some(1e3)] {
        let (want_norms, want) = run(&Device::Cpu, max_norm);
        let (got_norms, got) = run(&gpu, max_norm);
        for (a, b) in want_norms.iter().zip(&got_norms) {
            assert!((a - b).abs() <= 1e-5 * a, "norm {a} vs {b}");
        }
        for (w, g) in want.iter().zip(&got) {
            for (a, b) in w.iter().zip(g) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                    "{max_norm:?}: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn clipping_scales_the_update_as_clipped_gradients_would() {
    // AdamW is scale-invariant only once eps is negligible: compare against gradients that
    // were clipped by hand instead.
    for device in std::iter::once(Device::Cpu).chain(test_device()) {
        let (_, guarded) = run(&device, Some(5.0));
        let ps = params(&device);
        let mut opt = AdamW::new(group(&ps), AdamWConfig::default()).unwrap();
        for step in 1..=3 {
            give_grads(&ps, step, 1.0);
            crate::optim::clip_grad_norm(&ps, 5.0).unwrap();
            opt.step(0.01).unwrap();
        }
        for (p, g) in ps.iter().zip(&guarded) {
            for (a, b) in p.to_vec_f64().unwrap().iter().zip(g) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                    "{device}: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn the_first_bad_step_is_kept_and_no_update_applies_from_it_on() {
    for device in std::iter::once(Device::Cpu).chain(test_device()) {
        for (what, loss, grad_scale) in [("loss", f64::NAN, 1.0), ("gradient norm", 0.5, 1e30)] {
            let ps = params(&device);
            let groups = vec![ParamGroup::new(1.0, 0.0)
                .with("a", &ps[2])
                .with("b", &ps[4])];
            let mut opt = AdamW::new(groups, AdamWConfig::default()).unwrap();
            let mut guard = StepGuard::new(&device).unwrap();
            give_grads(&ps, 1, 1.0);
            guard.check(1, &scalar(0.5, &device), &ps, None).unwrap();
            let before = ps[2].to_vec_f64().unwrap();
            opt.step_guarded(0.01, &guard).unwrap();
            let good = ps[2].to_vec_f64().unwrap();
            assert_ne!(good, before, "a good step updates");

            give_grads(&ps, 2, grad_scale);
            guard
                .check(2, &scalar(loss, &device), &ps, Some(1.0))
                .unwrap();
            opt.step_guarded(0.01, &guard).unwrap();
            // A later good step is skipped too: the flag stays until the host looks.
            give_grads(&ps, 3, 1.0);
            guard.check(3, &scalar(0.5, &device), &ps, None).unwrap();
            opt.step_guarded(0.01, &guard).unwrap();

            let bad = guard.read().unwrap().first_bad.expect("a bad step");
            assert_eq!((bad.step, bad.what), (2, what), "{device}");
            assert!(!bad.value.is_finite(), "{device}: {bad:?}");
            assert_eq!(ps[2].to_vec_f64().unwrap(), good, "{device}: {what}");
            let state = opt.state_dict().unwrap();
            assert!(state.iter().all(|(_, t)| t
                .to_vec_f64()
                .unwrap()
                .iter()
                .all(|v| v.is_finite())));
        }
    }
}

#[test]
fn the_guard_refuses_bad_arguments() {
    let mut guard = StepGuard::new(&Device::Cpu).unwrap();
    let loss = scalar(1.0, &Device::Cpu);
    assert!(guard.check(1, &loss, &[], Some(0.0)).is_err());
    assert!(guard.check(1, &loss, &[], Some(f64::NAN)).is_err());
    assert!(guard.check(0, &loss, &[], None).is_err());
    let two = Tensor::zeros([2], DType::F32, &Device::Cpu).unwrap();
    assert!(guard.check(1, &two, &[], None).is_err());
    // No gradients at all: norm 0, nothing bad.
    guard.check(1, &loss, &[], None).unwrap();
    let report = guard.read().unwrap();
    assert_eq!((report.first_bad, report.grad_norm), (None, 0.0));
}

/// More gradients than one `sum_squares` launch takes on any adapter (31 at most), of awkward
/// sizes: the GPU's norm is the CPU's.
#[test]
fn many_gradients_give_the_cpu_norm() {
    let Some(gpu) = test_device() else { return };
    let norm = |device: &Device| {
        let ps: Vec<Tensor> = (0..75)
            .map(|i| {
                let len = [1, 2, 3, 257, 13][i % 5];
                Tensor::randn([len], 1.0, i as u64, DType::F32, &Device::Cpu)
                    .unwrap()
                    .to_device(device)
                    .unwrap()
                    .set_requires_grad(true)
            })
            .collect();
        give_grads(&ps, 1, 1.0);
        let mut guard = StepGuard::new(device).unwrap();
        guard.check(1, &scalar(0.5, device), &ps, None).unwrap();
        guard.read().unwrap().grad_norm
    };
    let (want, got) = (norm(&Device::Cpu), norm(&gpu));
    assert!((want - got).abs() <= 1e-5 * want, "{want} vs {got}");
}
