use rand::{Rng, SeedableRng};

use super::*;

/// The root of a decreasing function `g` on [lo, hi], by bisection (independent of the solver).
fn root(g: impl Fn(f64) -> f64, mut lo: f64, mut hi: f64) -> f64 {
    assert!(g(lo) > 0.0 && g(hi) < 0.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if g(mid) > 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

fn sigmoid(t: f64) -> f64 {
    1.0 / (1.0 + (-t).exp())
}

fn fit(x: &[f64], labels: &[usize], dim: usize, classes: usize) -> Fitted {
    let fitted = LogisticRegression::default()
        .fit(Samples {
            x,
            labels,
            dim,
            classes,
        })
        .unwrap();
    assert!(fitted.converged, "{fitted:?}");
    assert!(fitted.grad_max <= 1e-8, "{fitted:?}");
    fitted
}

#[test]
fn separable_two_classes_stay_finite_at_the_derived_optimum() {
    // x = -1 (class 0), x = +1 (class 1). By the symmetry x -> -x, 0 <-> 1 the optimum has
    // w_1 = -w_0 = w and b_0 = b_1, so f = 2 log(1 + e^{-2w}) + w² and f'(w) = 0 gives
    // w = 2 σ(-2w). Without the penalty w would run off to infinity.
    let w = root(|w| 2.0 * sigmoid(-2.0 * w) - w, 0.0, 2.0);
    let fitted = fit(&[-1.0, 1.0], &[0, 1], 1, 2);
    assert!(
        (fitted.weights[0] + w).abs() < 1e-8,
        "{fitted:?} vs w = {w}"
    );
    assert!((fitted.weights[1] - w).abs() < 1e-8);
    assert!((fitted.intercepts[0] - fitted.intercepts[1]).abs() < 1e-8);
    assert_eq!(fitted.predict(&[-3.0, -0.1, 0.2, 5.0]), vec![0, 0, 1, 1]);
}

#[test]
fn non_separable_two_classes_reach_the_derived_optimum() {
    // x = +1: labels 1, 1, 0; x = -1: labels 0, 0, 1. The same symmetry gives
    // f = 2 [2 log(1 + e^{-2w}) + log(1 + e^{2w})] + w², so f'(w) = 0 gives
    // w = 4 σ(-2w) - 2 σ(2w).
    let w = root(
        |w| 4.0 * sigmoid(-2.0 * w) - 2.0 * sigmoid(2.0 * w) - w,
        0.0,
        1.0,
    );
    let fitted = fit(
        &[1.0, 1.0, 1.0, -1.0, -1.0, -1.0],
        &[1, 1, 0, 0, 0, 1],
        1,
        2,
    );
    assert!(
        (fitted.weights[1] - w).abs() < 1e-8,
        "{fitted:?} vs w = {w}"
    );
    assert!((fitted.weights[0] + w).abs() < 1e-8);
    assert!((fitted.intercepts[0] - fitted.intercepts[1]).abs() < 1e-8);
    // f at the optimum from the closed form.
    let f = 2.0 * (2.0 * (1.0 + (-2.0 * w).exp()).ln() + (1.0 + (2.0 * w).exp()).ln()) + w * w;
    assert!((fitted.objective - f).abs() < 1e-12);
}

#[test]
fn the_intercept_is_not_penalised() {
    // All x = 0: W = 0 and softmax(b) must equal the class frequencies (3/4, 1/4) exactly,
    // which a penalised intercept would shrink towards equal scores.
    let fitted = fit(&[0.0; 4], &[0, 0, 0, 1], 1, 2);
    assert!(fitted.weights.iter().all(|w| w.abs() < 1e-12));
    let gap = fitted.intercepts[1] - fitted.intercepts[0];
    assert!((gap - (1.0f64 / 3.0).ln()).abs() < 1e-8, "{gap}");
}

#[test]
fn three_symmetric_classes_reach_the_derived_optimum() {
    // One sample of class k at u_k = (cos 2πk/3, sin 2πk/3). Rotating by 120° permutes the
    // classes, so w_k = a u_k and all b_k equal; then z = a for the true class and -a/2 for
    // the others, f = 3 log(1 + 2 e^{-3a/2}) + 3a²/2 and f'(a) = 0 gives
    // a = 3 e^{-3a/2} / (1 + 2 e^{-3a/2}).
    let a = root(
        |a| 3.0 * (-1.5 * a).exp() / (1.0 + 2.0 * (-1.5 * a).exp()) - a,
        0.0,
        3.0,
    );
    let u: Vec<[f64; 2]> = (0..3)
        .map(|k| {
            let angle = 2.0 * std::f64::consts::PI * k as f64 / 3.0;
            [angle.cos(), angle.sin()]
        })
        .collect();
    let x: Vec<f64> = u.iter().flatten().copied().collect();
    let fitted = fit(&x, &[0, 1, 2], 2, 3);
    for (k, uk) in u.iter().enumerate() {
        for (j, ukj) in uk.iter().enumerate() {
            let got = fitted.weights[k * 2 + j];
            assert!((got - a * ukj).abs() < 1e-8, "w[{k}][{j}] = {got}, a = {a}");
        }
        assert!((fitted.intercepts[k] - fitted.intercepts[0]).abs() < 1e-8);
    }
    assert_eq!(fitted.predict(&x), vec![0, 1, 2]);
}

#[test]
fn gradient_matches_finite_differences() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let (n, d, k) = (7, 4, 3);
    let x: Vec<f64> = (0..n * d).map(|_| rng.random_range(-2.0..2.0)).collect();
    let labels: Vec<usize> = (0..n).map(|i| i % k).collect();
    let s = Samples {
        x: &x,
        labels: &labels,
        dim: d,
        classes: k,
    };
    let params: Vec<f64> = (0..k * d + k)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let mut grad = vec![0.0; params.len()];
    objective(&params, &mut grad, s, 0.7);
    let h = 1e-6;
    let mut scratch = vec![0.0; params.len()];
    for i in 0..params.len() {
        let mut p = params.clone();
        p[i] += h;
        let up = objective(&p, &mut scratch, s, 0.7);
        p[i] -= 2.0 * h;
        let down = objective(&p, &mut scratch, s, 0.7);
        let numeric = (up - down) / (2.0 * h);
        assert!(
            (numeric - grad[i]).abs() < 1e-7,
            "param {i}: {numeric} vs {}",
            grad[i]
        );
    }
}

#[test]
fn random_problems_converge_to_zero_gradient() {
    // A few-shot-sized problem (5 classes, 25 support samples, 64 dimensions).
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let (n, d, k) = (25, 64, 5);
    let x: Vec<f64> = (0..n * d).map(|_| rng.random_range(-1.0..1.0)).collect();
    let labels: Vec<usize> = (0..n).map(|i| i % k).collect();
    let fitted = fit(&x, &labels, d, k);
    assert!(fitted.iterations < 1000);
    // Separable in 64 dimensions: the fit classifies its own training set.
    assert_eq!(fitted.predict(&x), labels);
}

#[test]
fn malformed_samples_are_errors() {
    let lr = LogisticRegression::default();
    let bad_label = Samples {
        x: &[0.0, 1.0],
        labels: &[0, 2],
        dim: 1,
        classes: 2,
    };
    assert!(lr.fit(bad_label).unwrap_err().contains("label 2"));
    let bad_len = Samples {
        x: &[0.0, 1.0, 2.0],
        labels: &[0, 1],
        dim: 2,
        classes: 2,
    };
    assert!(lr.fit(bad_len).is_err());
    let one_class = Samples {
        x: &[0.0],
        labels: &[0],
        dim: 1,
        classes: 1,
    };
    assert!(lr.fit(one_class).is_err());
}
