use crate::{DType, Device, Tensor};

fn t(v: &[f64], s: &[usize]) -> Tensor {
    Tensor::from_f64_slice(v, s, DType::F64, &Device::Cpu).unwrap()
}

fn close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{a:?} vs {b:?}");
    }
}

#[test]
fn forward_matches_hand_values() {
    // Rows [3, 4] (norm 5) and [0, 0] (norm below eps: stays 0).
    let x = t(&[3.0, 4.0, 0.0, 0.0], &[2, 2]);
    close(
        &x.l2_normalize(-1, 1e-12).unwrap().to_vec_f64().unwrap(),
        &[0.6, 0.8, 0.0, 0.0],
        1e-15,
    );
    // Columns [3, 0] and [4, 0].
    close(
        &x.l2_normalize(0, 1e-12).unwrap().to_vec_f64().unwrap(),
        &[1.0, 1.0, 0.0, 0.0],
        1e-15,
    );
    // Norm 5e-4 < eps 1e-3: divided by eps.
    close(
        &t(&[3e-4, 4e-4], &[2])
            .l2_normalize(0, 1e-3)
            .unwrap()
            .to_vec_f64()
            .unwrap(),
        &[0.3, 0.4],
        1e-12,
    );
}

#[test]
fn gradient_matches_hand_values() {
    // y = x / ||x|| at x = [3, 4], loss = y[0]: dx = (e0 - y y0) / 5 = [0.64, -0.48] / 5.
    let x = t(&[3.0, 4.0], &[2]).set_requires_grad(true);
    let y = x.l2_normalize(0, 1e-12).unwrap();
    y.narrow(0, 0, 1)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    close(
        &x.grad().unwrap().to_vec_f64().unwrap(),
        &[0.128, -0.096],
        1e-12,
    );
}

#[test]
fn bad_arguments_are_errors() {
    let x = t(&[1.0, 2.0], &[2]);
    assert!(x.l2_normalize(1, 1e-12).is_err());
    assert!(x.l2_normalize(0, 0.0).is_err());
    assert!(x.l2_normalize(0, f64::NAN).is_err());
}

#[test]
fn gradients_match_finite_differences() {
    for case in super::gradcheck_cases() {
        let r = case.run(&Device::Cpu).unwrap();
        assert!(r.passed(), "{}", r.row());
    }
}
