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

// ---- Dynamic loss scaling (`LossScaling`): torch's GradScaler on the device.

use crate::optim::{LossScaleState, LossScaling, LOSS_SCALE_FLOOR};

/// Gradients `scale` times those of step `step` of `give_grads`, with one infinite element
/// when `overflow` (what a scaled gradient that left the f32 range looks like).
fn give_scaled_grads(ps: &[Tensor], step: u64, scale: f64, overflow: bool) {
    for (i, p) in ps.iter().enumerate() {
        let mut g: Vec<f64> = Tensor::randn(
            p.shape().clone(),
            1.0,
            7 * step + i as u64,
            DType::F64,
            &Device::Cpu,
        )
        .unwrap()
        .to_vec_f64()
        .unwrap()
        .iter()
        .map(|v| v * scale)
        .collect();
        if overflow && i == 1 {
            g[3] = f64::INFINITY;
        }
        set_grad(p, &g);
    }
}

fn scaling_guard(device: &Device, init: f64, growth_interval: usize) -> StepGuard {
    let scaling = LossScaling {
        init,
        growth_interval,
    };
    StepGuard::with_loss_scaling(device, scaling, None).unwrap()
}

#[test]
fn the_loss_scale_halves_on_overflow_doubles_after_n_good_steps_and_stops_at_its_floor() {
    for device in std::iter::once(Device::Cpu).chain(test_device()) {
        let ps = params(&device);
        let mut guard = scaling_guard(&device, 8.0, 3);
        assert_eq!(
            guard.loss_scale().unwrap().unwrap().to_vec_f64().unwrap(),
            [8.0]
        );
        // (overflow?, the scale after the step, good steps after it, skipped so far), as
        // torch's _amp_update_scale_ with backoff 0.5, growth 2, interval 3.
        let script = [
            (false, 8.0, 1, 0),
            (false, 8.0, 2, 0),
            (true, 4.0, 0, 1),
            (false, 4.0, 1, 1),
            (false, 4.0, 2, 1),
            (false, 8.0, 0, 1),
            (false, 8.0, 1, 1),
            (true, 4.0, 0, 2),
            (true, 2.0, 0, 3),
            (true, 1.0, 0, 4),
        ];
        for (i, &(overflow, scale, good_steps, skipped_steps)) in script.iter().enumerate() {
            let step = i + 1;
            give_scaled_grads(&ps, step as u64, scale, overflow);
            guard.check(step, &scalar(0.5, &device), &ps, None).unwrap();
            let report = guard.read().unwrap();
            assert_eq!(report.first_bad, None, "{device}: step {step}");
            assert_eq!(
                report.loss_scale,
                LossScaleState {
                    scale,
                    good_steps,
                    skipped_steps
                },
                "{device}: step {step}"
            );
        }
        // At the floor an overflow is no longer one: the run's first bad step.
        assert_eq!(LOSS_SCALE_FLOOR, 1.0);
        give_scaled_grads(&ps, 11, 1.0, true);
        guard.check(11, &scalar(0.5, &device), &ps, None).unwrap();
        let report = guard.read().unwrap();
        let bad = report.first_bad.expect("a bad step at the floor");
        assert_eq!((bad.step, bad.what), (11, "gradient norm"), "{device}");
        assert_eq!(
            report.loss_scale.scale, 1.0,
            "{device}: no scale below the floor"
        );
    }
}

#[test]
fn a_scaled_step_reports_the_unscaled_norm_and_a_scale_never_grows_to_infinity() {
    for device in std::iter::once(Device::Cpu).chain(test_device()) {
        let ps = params(&device);
        let mut plain = StepGuard::new(&device).unwrap();
        give_scaled_grads(&ps, 1, 1.0, false);
        plain.check(1, &scalar(0.5, &device), &ps, None).unwrap();
        let mut scaled = scaling_guard(&device, 1024.0, 1);
        give_scaled_grads(&ps, 1, 1024.0, false);
        scaled.check(1, &scalar(0.5, &device), &ps, None).unwrap();
        let (a, b) = (plain.read().unwrap(), scaled.read().unwrap());
        assert!(
            (a.grad_norm - b.grad_norm).abs() <= 1e-6 * a.grad_norm,
            "{a:?} {b:?}"
        );
        assert_eq!(b.loss_scale.scale, 2048.0, "{device}: interval 1 doubles");

        let top = 2f64.powi(127);
        let mut guard = scaling_guard(&device, top, 1);
        give_scaled_grads(&ps, 1, 1.0, false);
        guard.check(1, &scalar(0.5, &device), &ps, None).unwrap();
        assert_eq!(guard.read().unwrap().loss_scale.scale, top, "{device}");
    }
}

#[test]
fn a_skipped_step_changes_no_weight_nor_adamw_state_and_does_not_age_bias_correction() {
    for device in std::iter::once(Device::Cpu).chain(test_device()) {
        let ps = params(&device);
        let mut opt = AdamW::new(group(&ps), AdamWConfig::default()).unwrap();
        let mut guard = scaling_guard(&device, 65536.0, 2000);
        let moments = |opt: &AdamW| -> Vec<Vec<f64>> {
            let state = opt.state_dict().unwrap();
            state
                .iter()
                .filter(|(n, _)| !n.ends_with(".step"))
                .map(|(_, t)| t.to_vec_f64().unwrap())
                .collect()
        };
        give_scaled_grads(&ps, 1, 65536.0, false);
        guard
            .check(1, &scalar(0.5, &device), &ps, Some(5.0))
            .unwrap();
        opt.step_guarded(0.01, &guard).unwrap();
        let weights: Vec<Vec<f64>> = ps.iter().map(|p| p.to_vec_f64().unwrap()).collect();
        let state = moments(&opt);

        give_scaled_grads(&ps, 2, 65536.0, true);
        guard
            .check(2, &scalar(0.5, &device), &ps, Some(5.0))
            .unwrap();
        opt.step_guarded(0.01, &guard).unwrap();
        let report = guard.read().unwrap();
        assert_eq!(
            report.first_bad, None,
            "{device}: an overflow is not a bad step"
        );
        assert_eq!(report.loss_scale.scale, 32768.0, "{device}: halved");
        assert_eq!(report.loss_scale.skipped_steps, 1, "{device}");
        let after: Vec<Vec<f64>> = ps.iter().map(|p| p.to_vec_f64().unwrap()).collect();
        assert_eq!(after, weights, "{device}: the skipped step moved weights");
        assert_eq!(
            moments(&opt),
            state,
            "{device}: the skipped step moved AdamW's state"
        );

        give_scaled_grads(&ps, 3, 32768.0, false);
        guard
            .check(3, &scalar(0.5, &device), &ps, Some(5.0))
            .unwrap();
        opt.step_guarded(0.01, &guard).unwrap();

        // The same without scaling and without the skipped step: AdamW's second step (bias
        // correction of step 2) on step 3's gradients.
        let reference = params(&device);
        let mut ref_opt = AdamW::new(group(&reference), AdamWConfig::default()).unwrap();
        for step in [1, 3] {
            give_scaled_grads(&reference, step, 1.0, false);
            crate::optim::clip_grad_norm(&reference, 5.0).unwrap();
            ref_opt.step(0.01).unwrap();
        }
        for (p, r) in ps.iter().zip(&reference) {
            for (a, b) in p.to_vec_f64().unwrap().iter().zip(r.to_vec_f64().unwrap()) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{device}: {a} vs {b} unscaled without the skipped step"
                );
            }
        }
    }
}

#[test]
fn loss_scaling_refuses_settings_it_cannot_hold() {
    let bad = [
        (0.5, 10),
        (f64::INFINITY, 10),
        (f64::NAN, 10),
        (1e39, 10),
        (65536.0, 0),
    ];
    for (init, growth_interval) in bad {
        let scaling = LossScaling {
            init,
            growth_interval,
        };
        assert!(
            StepGuard::with_loss_scaling(&Device::Cpu, scaling, None).is_err(),
            "{scaling:?}"
        );
    }
    let resumed = LossScaleState {
        scale: 0.25,
        good_steps: 0,
        skipped_steps: 0,
    };
    assert!(
        StepGuard::with_loss_scaling(&Device::Cpu, LossScaling::default(), Some(resumed)).is_err()
    );
    // Without scaling there is no scale tensor to multiply the loss by.
    assert!(StepGuard::new(&Device::Cpu)
        .unwrap()
        .loss_scale()
        .unwrap()
        .is_none());
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
