use super::{assert_close, param, set_grad, values};
use crate::optim::{AdamW, AdamWConfig, Optimizer, ParamGroup};
use crate::{DType, Device, Tensor};

const B1: f64 = 0.9;
const B2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// Two AdamW steps of one element, written out: the moments, their bias corrections
/// (1 - 0.9^t, 1 - 0.999^t) and the decoupled decay, in torch's order.
fn two_steps_by_hand(p0: f64, g1: f64, g2: f64, lr: f64, wd: f64) -> (f64, f64) {
    // step 1: m = 0.1 g1, v = 0.001 g1^2, bias corrections 0.1 and 0.001
    let m1 = (1.0 - B1) * g1;
    let v1 = (1.0 - B2) * g1 * g1;
    let p1 = p0 * (1.0 - lr * wd) - lr / 0.1 * m1 / ((v1.sqrt() / 0.001f64.sqrt()) + EPS);
    // step 2: bias corrections 1 - 0.81 = 0.19 and 1 - 0.998001 = 0.001999
    let m2 = B1 * m1 + (1.0 - B1) * g2;
    let v2 = B2 * v1 + (1.0 - B2) * g2 * g2;
    let p2 = p1 * (1.0 - lr * wd) - lr / 0.19 * m2 / ((v2.sqrt() / 0.001999f64.sqrt()) + EPS);
    (p1, p2)
}

#[test]
fn two_steps_match_hand_arithmetic_in_two_groups() {
    // Group "decay": full lr, weight decay 0.05. Group "no_decay": lr scale 0.5, no decay.
    let w = param(&[1.0, -2.0, 0.5]);
    let b = param(&[0.3, -0.7]);
    let groups = vec![
        ParamGroup::new(1.0, 0.05).with("w", &w),
        ParamGroup::new(0.5, 0.0).with("b", &b),
    ];
    let mut opt = AdamW::new(groups, AdamWConfig::default()).unwrap();
    let lr = 0.1;
    let (gw1, gw2) = ([0.4, -1.5, 2.0], [0.1, 0.3, -4.0]);
    let (gb1, gb2) = ([-0.2, 0.6], [0.05, 0.6]);

    set_grad(&w, &gw1);
    set_grad(&b, &gb1);
    opt.step(lr).unwrap();
    let w1 = values(&w);
    let b1 = values(&b);
    set_grad(&w, &gw2);
    set_grad(&b, &gb2);
    opt.step(lr).unwrap();

    for i in 0..3 {
        let (p1, p2) = two_steps_by_hand([1.0, -2.0, 0.5][i], gw1[i], gw2[i], lr, 0.05);
        assert_close(&[w1[i]], &[p1], 1e-12);
        assert_close(&[values(&w)[i]], &[p2], 1e-12);
    }
    for i in 0..2 {
        let (p1, p2) = two_steps_by_hand([0.3, -0.7][i], gb1[i], gb2[i], lr * 0.5, 0.0);
        assert_close(&[b1[i]], &[p1], 1e-12);
        assert_close(&[values(&b)[i]], &[p2], 1e-12);
    }
    // An independent sanity check of step 1: the bias-corrected ratio m/sqrt(v) is sign(g),
    // so each weight shrinks by lr*wd and then moves by lr against its gradient.
    assert_close(
        &w1,
        &[
            1.0 * (1.0 - 0.005) - 0.1,
            -2.0 * (1.0 - 0.005) + 0.1,
            0.5 * (1.0 - 0.005) - 0.1,
        ],
        1e-7,
    );
    assert_close(&b1, &[0.3 + 0.05, -0.7 - 0.05], 1e-7);
}

#[test]
fn f32_parameters_follow_the_same_arithmetic() {
    let w = Tensor::from_vec(vec![1.0f32, -2.0, 0.5], [3], &Device::Cpu)
        .unwrap()
        .set_requires_grad(true);
    let mut opt = AdamW::new(
        vec![ParamGroup::new(1.0, 0.05).with("w", &w)],
        AdamWConfig::default(),
    )
    .unwrap();
    let (g1, g2) = ([0.4, -1.5, 2.0], [0.1, 0.3, -4.0]);
    set_grad(&w, &g1);
    opt.step(0.1).unwrap();
    set_grad(&w, &g2);
    opt.step(0.1).unwrap();
    assert_eq!(w.dtype(), DType::F32);
    let want: Vec<f64> = (0..3)
        .map(|i| two_steps_by_hand([1.0, -2.0, 0.5][i], g1[i], g2[i], 0.1, 0.05).1)
        .collect();
    assert_close(&values(&w), &want, 1e-6);
}

#[test]
fn parameters_without_a_gradient_are_left_alone_and_do_not_age() {
    let a = param(&[1.0, 2.0]);
    let b = param(&[3.0]);
    let mut opt = AdamW::new(
        vec![ParamGroup::new(1.0, 0.1).with("a", &a).with("b", &b)],
        AdamWConfig::default(),
    )
    .unwrap();
    set_grad(&a, &[1.0, -1.0]);
    opt.step(0.01).unwrap();
    opt.step(0.01).unwrap();
    assert_eq!(values(&b), vec![3.0], "no gradient, no decay either");
    let steps: Vec<f64> = opt
        .state_dict()
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.ends_with(".step"))
        .map(|(_, t)| t.to_scalar().unwrap())
        .collect();
    assert_eq!(steps, vec![2.0, 0.0]);
    // b's first update is a first step (bias correction with t = 1): it moves by lr.
    opt.zero_grad();
    assert!(a.grad().is_none() && b.grad().is_none());
    set_grad(&b, &[5.0]);
    opt.step(0.01).unwrap();
    assert_close(&values(&b), &[3.0 * (1.0 - 0.001) - 0.01], 1e-8);
}

#[test]
fn long_parameters_take_the_parallel_path_with_identical_results() {
    // 40,000 elements (above the rayon threshold) against the same values as two halves.
    let n = 40_000;
    let init: Vec<f64> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f64 / 500.0 - 1.0)
        .collect();
    let grad: Vec<f64> = (0..n)
        .map(|i| ((i * 104_729) % 997) as f64 / 300.0 - 1.5)
        .collect();
    let long = Tensor::from_f64_slice(&init, [n], DType::F32, &Device::Cpu)
        .unwrap()
        .set_requires_grad(true);
    let halves: Vec<Tensor> = [0..n / 2, n / 2..n]
        .into_iter()
        .map(|r| {
            Tensor::from_f64_slice(&init[r.clone()], [r.len()], DType::F32, &Device::Cpu)
                .unwrap()
                .set_requires_grad(true)
        })
        .collect();
    let mut opt_long = AdamW::new(
        vec![ParamGroup::new(1.0, 0.05).with("long", &long)],
        AdamWConfig::default(),
    )
    .unwrap();
    let mut opt_halves = AdamW::new(
        vec![ParamGroup::new(1.0, 0.05)
            .with("first", &halves[0])
            .with("second", &halves[1])],
        AdamWConfig::default(),
    )
    .unwrap();
    for _ in 0..2 {
        set_grad(&long, &grad);
        set_grad(&halves[0], &grad[..n / 2]);
        set_grad(&halves[1], &grad[n / 2..]);
        opt_long.step(1e-3).unwrap();
        opt_halves.step(1e-3).unwrap();
    }
    let mut joined = values(&halves[0]);
    joined.extend(values(&halves[1]));
    assert_eq!(values(&long), joined);
}

#[test]
fn bad_hyper_parameters_are_errors() {
    let w = param(&[1.0]);
    let group = || vec![ParamGroup::new(1.0, 0.0).with("w", &w)];
    for config in [
        AdamWConfig {
            beta1: 1.0,
            ..Default::default()
        },
        AdamWConfig {
            beta2: -0.1,
            ..Default::default()
        },
        AdamWConfig {
            eps: f64::NAN,
            ..Default::default()
        },
    ] {
        assert!(AdamW::new(group(), config).is_err(), "{config:?}");
    }
    let mut opt = AdamW::new(group(), AdamWConfig::default()).unwrap();
    set_grad(&w, &[1.0]);
    assert!(opt.step(f64::NAN).is_err());
    assert!(opt.step(-1.0).is_err());
    assert_eq!(values(&w), vec![1.0]);
}
