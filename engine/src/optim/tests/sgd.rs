use super::{assert_close, param, set_grad, values};
use crate::optim::{Optimizer, ParamGroup, Sgd, SgdConfig};

const P0: [f64; 3] = [1.0, -2.0, 0.5];
const G1: [f64; 3] = [0.4, -1.5, 2.0];
const G2: [f64; 3] = [0.1, 0.3, -4.0];

/// Runs two SGD steps on a weight (lr scale 1, decay 0.1) and a bias (lr scale 0.5, no
/// decay), both starting at P0 with gradients G1 then G2; returns both after each step.
fn two_steps(config: SgdConfig, lr: f64) -> [[Vec<f64>; 2]; 2] {
    let w = param(&P0);
    let b = param(&P0);
    let mut opt = Sgd::new(
        vec![
            ParamGroup::new(1.0, 0.1).with("w", &w),
            ParamGroup::new(0.5, 0.0).with("b", &b),
        ],
        config,
    )
    .unwrap();
    let mut after = Vec::new();
    for g in [G1, G2] {
        set_grad(&w, &g);
        set_grad(&b, &g);
        opt.step(lr).unwrap();
        after.push([values(&w), values(&b)]);
    }
    after.try_into().unwrap()
}

#[test]
fn plain_sgd_with_coupled_weight_decay() {
    let [[w1, b1], [w2, b2]] = two_steps(SgdConfig::default(), 0.1);
    for i in 0..3 {
        // weight: p -= lr (g + wd p)
        let w1_i = P0[i] - 0.1 * (G1[i] + 0.1 * P0[i]);
        let w2_i = w1_i - 0.1 * (G2[i] + 0.1 * w1_i);
        assert_close(&[w1[i], w2[i]], &[w1_i, w2_i], 1e-14);
        // bias: half the lr, no decay
        let b1_i = P0[i] - 0.05 * G1[i];
        let b2_i = b1_i - 0.05 * G2[i];
        assert_close(&[b1[i], b2[i]], &[b1_i, b2_i], 1e-14);
    }
}

#[test]
fn momentum_starts_from_the_first_direction() {
    let config = SgdConfig {
        momentum: 0.9,
        nesterov: false,
    };
    let [[w1, b1], [w2, b2]] = two_steps(config, 0.1);
    for i in 0..3 {
        // step 1: buf = d1 = g1 + wd p0;  step 2: buf = 0.9 d1 + (g2 + wd p1)
        let d1 = G1[i] + 0.1 * P0[i];
        let w1_i = P0[i] - 0.1 * d1;
        let buf2 = 0.9 * d1 + (G2[i] + 0.1 * w1_i);
        assert_close(&[w1[i], w2[i]], &[w1_i, w1_i - 0.1 * buf2], 1e-14);
        let b1_i = P0[i] - 0.05 * G1[i];
        let b2_i = b1_i - 0.05 * (0.9 * G1[i] + G2[i]);
        assert_close(&[b1[i], b2[i]], &[b1_i, b2_i], 1e-14);
    }
}

#[test]
fn nesterov_looks_ahead_along_the_buffer() {
    let config = SgdConfig {
        momentum: 0.9,
        nesterov: true,
    };
    let [[w1, b1], [w2, b2]] = two_steps(config, 0.1);
    for i in 0..3 {
        // the step direction is d + 0.9 buf, with buf updated first
        let d1 = G1[i] + 0.1 * P0[i];
        let w1_i = P0[i] - 0.1 * (d1 + 0.9 * d1);
        let d2 = G2[i] + 0.1 * w1_i;
        let buf2 = 0.9 * d1 + d2;
        assert_close(
            &[w1[i], w2[i]],
            &[w1_i, w1_i - 0.1 * (d2 + 0.9 * buf2)],
            1e-14,
        );
        let b1_i = P0[i] - 0.05 * 1.9 * G1[i];
        let bbuf2 = 0.9 * G1[i] + G2[i];
        let b2_i = b1_i - 0.05 * (G2[i] + 0.9 * bbuf2);
        assert_close(&[b1[i], b2[i]], &[b1_i, b2_i], 1e-14);
    }
}

#[test]
fn nesterov_without_momentum_is_an_error() {
    let w = param(&[1.0]);
    let config = SgdConfig {
        momentum: 0.0,
        nesterov: true,
    };
    let err = Sgd::new(vec![ParamGroup::new(1.0, 0.0).with("w", &w)], config)
        .err()
        .unwrap();
    assert!(err.to_string().contains("Nesterov"), "{err}");
}
