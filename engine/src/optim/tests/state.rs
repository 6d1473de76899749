use super::{param, set_grad, values};
use crate::optim::{AdamW, AdamWConfig, Optimizer, ParamGroup, Sgd, SgdConfig};
use crate::{DType, Device, Error, Tensor};

const GRADS: [[f64; 5]; 3] = [
    [0.4, -1.5, 2.0, -0.2, 0.6],
    [0.1, 0.3, -4.0, 0.05, 0.6],
    [-0.7, 0.2, 1.1, 0.3, -0.9],
];

/// A weight [3] (decay 0.05) and a bias [2] (lr scale 0.5, no decay) with the given values.
fn model(w: &[f64], b: &[f64]) -> (Tensor, Tensor, Vec<ParamGroup>) {
    let (w, b) = (param(w), param(b));
    let groups = vec![
        ParamGroup::new(1.0, 0.05).with("w", &w),
        ParamGroup::new(0.5, 0.0).with("b", &b),
    ];
    (w, b, groups)
}

fn step_with(opt: &mut dyn Optimizer, w: &Tensor, b: &Tensor, g: &[f64; 5]) {
    set_grad(w, &g[..3]);
    set_grad(b, &g[3..]);
    opt.step(0.1).unwrap();
}

/// Two steps, a save, and a third step on the original and on a fresh optimiser (over fresh
/// parameters holding the same values) restored from the save: the two must agree exactly.
fn round_trip(make: &dyn Fn(Vec<ParamGroup>) -> Box<dyn Optimizer>) {
    let (w, b, groups) = model(&[1.0, -2.0, 0.5], &[0.3, -0.7]);
    let mut original = make(groups);
    step_with(original.as_mut(), &w, &b, &GRADS[0]);
    step_with(original.as_mut(), &w, &b, &GRADS[1]);
    let saved = original.state_dict().unwrap();
    let saved_values: Vec<Vec<f64>> = saved.iter().map(|(_, t)| values(t)).collect();

    let (w2, b2, groups2) = model(&values(&w), &values(&b));
    let mut restored = make(groups2);
    restored.load_state_dict(&saved).unwrap();
    step_with(original.as_mut(), &w, &b, &GRADS[2]);
    step_with(restored.as_mut(), &w2, &b2, &GRADS[2]);
    assert_eq!(values(&w2), values(&w));
    assert_eq!(values(&b2), values(&b));

    // The saved tensors are copies: the later steps did not change them.
    let after: Vec<Vec<f64>> = saved.iter().map(|(_, t)| values(t)).collect();
    assert_eq!(after, saved_values);
    assert!(saved.iter().all(|(_, t)| t.device() == &Device::Cpu));
}

#[test]
fn adamw_state_round_trip_gives_identical_steps() {
    round_trip(&|g| Box::new(AdamW::new(g, AdamWConfig::default()).unwrap()));
    let (_, _, groups) = model(&[0.0; 3], &[0.0; 2]);
    let names: Vec<String> = AdamW::new(groups, AdamWConfig::default())
        .unwrap()
        .state_dict()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "adamw.0.step",
            "adamw.0.exp_avg",
            "adamw.0.exp_avg_sq",
            "adamw.1.step",
            "adamw.1.exp_avg",
            "adamw.1.exp_avg_sq"
        ]
    );
}

#[test]
fn sgd_state_round_trip_gives_identical_steps() {
    let config = SgdConfig {
        momentum: 0.9,
        nesterov: false,
    };
    round_trip(&move |g| Box::new(Sgd::new(g, config).unwrap()));
    // Without momentum there is no state at all.
    let (_, _, groups) = model(&[0.0; 3], &[0.0; 2]);
    assert!(Sgd::new(groups, SgdConfig::default())
        .unwrap()
        .state_dict()
        .unwrap()
        .is_empty());
}

/// Loads `state` into a fresh two-step AdamW and returns the error, after checking that the
/// failed load changed nothing (the next step equals that of an untouched twin).
fn adamw_load_error(edit: impl Fn(&mut Vec<(String, Tensor)>)) -> Error {
    let run = |load: bool| {
        let (w, b, groups) = model(&[1.0, -2.0, 0.5], &[0.3, -0.7]);
        let mut opt = AdamW::new(groups, AdamWConfig::default()).unwrap();
        step_with(&mut opt, &w, &b, &GRADS[0]);
        let mut state = opt.state_dict().unwrap();
        // Steps taken after the save, so that a partial load would be visible.
        step_with(&mut opt, &w, &b, &GRADS[1]);
        let err = load.then(|| {
            edit(&mut state);
            opt.load_state_dict(&state).unwrap_err()
        });
        step_with(&mut opt, &w, &b, &GRADS[2]);
        (err, values(&w), values(&b))
    };
    let (err, w, b) = run(true);
    let (_, w_untouched, b_untouched) = run(false);
    assert_eq!((w, b), (w_untouched, b_untouched));
    err.unwrap()
}

fn cpu(v: &[f64], dims: &[usize]) -> Tensor {
    Tensor::from_f64_slice(v, dims, DType::F64, &Device::Cpu).unwrap()
}

#[test]
fn mismatched_state_is_a_clear_error_and_changes_nothing() {
    let missing = adamw_load_error(|s| s.retain(|(n, _)| n != "adamw.1.exp_avg_sq"));
    let msg = missing.to_string();
    assert!(
        msg.contains("no entry adamw.1.exp_avg_sq") && msg.contains("\"b\""),
        "{msg}"
    );

    let extra = adamw_load_error(|s| s.push(("adamw.2.step".into(), cpu(&[1.0], &[]))));
    assert!(
        extra
            .to_string()
            .contains("unexpected entries [\"adamw.2.step\"]"),
        "{extra}"
    );

    let wrong_shape = adamw_load_error(|s| s[1].1 = cpu(&[0.0; 4], &[4]));
    let msg = wrong_shape.to_string();
    assert!(
        matches!(wrong_shape, Error::Shape { .. }) && msg.contains("adamw.0.exp_avg"),
        "{msg}"
    );

    let bad_step = adamw_load_error(|s| s[0].1 = cpu(&[1.5], &[]));
    assert!(
        bad_step.to_string().contains("not a step count"),
        "{bad_step}"
    );

    let duplicate = adamw_load_error(|s| s.push(s[0].clone()));
    assert!(
        duplicate.to_string().contains("appears twice"),
        "{duplicate}"
    );

    // Another optimiser's state.
    let sgd_state = || {
        let (_, _, groups) = model(&[0.0; 3], &[0.0; 2]);
        let config = SgdConfig {
            momentum: 0.9,
            nesterov: false,
        };
        Sgd::new(groups, config).unwrap().state_dict().unwrap()
    };
    let other = adamw_load_error(|s| *s = sgd_state());
    assert!(
        other.to_string().contains("no entry adamw.0.step"),
        "{other}"
    );
}

#[test]
fn an_f32_state_loads_into_f32_parameters_on_their_device() {
    let w = Tensor::from_vec(vec![1.0f32, 2.0], [2], &Device::Cpu)
        .unwrap()
        .set_requires_grad(true);
    let make = || {
        AdamW::new(
            vec![ParamGroup::new(1.0, 0.0).with("w", &w)],
            AdamWConfig::default(),
        )
        .unwrap()
    };
    let mut opt = make();
    set_grad(&w, &[1.0, -1.0]);
    opt.step(0.1).unwrap();
    let state = opt.state_dict().unwrap();
    assert_eq!(state[1].1.dtype(), DType::F32);
    let mut fresh = make();
    fresh.load_state_dict(&state).unwrap();
    let reloaded = fresh.state_dict().unwrap();
    for ((n1, t1), (n2, t2)) in state.iter().zip(&reloaded) {
        assert_eq!(n1, n2);
        assert_eq!(t1.dtype(), t2.dtype());
        assert_eq!(values(t1), values(t2));
    }
}
