use super::{assert_close, param, set_grad, values};
use crate::optim::clip_grad_norm;

#[test]
fn clips_to_max_norm_and_returns_the_norm_before() {
    // Gradients (3, 4) and (12): global norm sqrt(9 + 16 + 144) = 13.
    let a = param(&[0.0, 0.0]);
    let b = param(&[0.0]);
    let c = param(&[7.0]); // no gradient: ignored
    set_grad(&a, &[3.0, 4.0]);
    set_grad(&b, &[12.0]);
    let params = [a.clone(), b.clone(), c.clone()];

    // Below the threshold nothing changes.
    assert_close(&[clip_grad_norm(&params, 20.0).unwrap()], &[13.0], 1e-15);
    assert_eq!(values(&a.grad().unwrap()), vec![3.0, 4.0]);

    let norm = clip_grad_norm(&params, 6.5).unwrap();
    assert_close(&[norm], &[13.0], 1e-15);
    let scale = 6.5 / (13.0 + 1e-6);
    assert_close(
        &values(&a.grad().unwrap()),
        &[3.0 * scale, 4.0 * scale],
        1e-15,
    );
    assert_close(&values(&b.grad().unwrap()), &[12.0 * scale], 1e-15);
    assert!(c.grad().is_none());
    // The clipped gradients have norm max_norm (up to the 1e-6 guard).
    assert_close(&[clip_grad_norm(&params, 100.0).unwrap()], &[6.5], 1e-6);
}

#[test]
fn a_gradient_shared_by_two_leaves_is_scaled_once() {
    // backward hands both inputs of an add the same gradient tensor.
    let a = param(&[3.0]);
    let b = param(&[4.0]);
    a.add(&b)
        .unwrap()
        .mul_scalar(2.0)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(a.grad().unwrap().same_storage(&b.grad().unwrap()));
    let norm = clip_grad_norm(&[a.clone(), b.clone()], 1.0).unwrap();
    assert_close(&[norm], &[8f64.sqrt()], 1e-15);
    let each = 2.0 / (8f64.sqrt() + 1e-6);
    assert_close(&values(&a.grad().unwrap()), &[each], 1e-15);
    assert_close(&values(&b.grad().unwrap()), &[each], 1e-15);
}

#[test]
fn a_non_finite_norm_is_reported_and_gradients_are_kept() {
    let a = param(&[0.0, 0.0]);
    set_grad(&a, &[f64::NAN, 1.0]);
    assert!(clip_grad_norm(std::slice::from_ref(&a), 1.0)
        .unwrap()
        .is_nan());
    assert_eq!(values(&a.grad().unwrap())[1], 1.0);
    set_grad(&a, &[f64::INFINITY, 1.0]);
    assert_eq!(
        clip_grad_norm(std::slice::from_ref(&a), 1.0).unwrap(),
        f64::INFINITY
    );
    assert!(clip_grad_norm(&[a], 0.0).is_err());
}
