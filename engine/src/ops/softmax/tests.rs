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
    // softmax([0, ln 2, ln 5]) = [1, 2, 5] / 8.
    let x = t(&[0.0, 2f64.ln(), 5f64.ln()], &[1, 3]);
    close(
        &x.softmax(-1).unwrap().to_vec_f64().unwrap(),
        &[0.125, 0.25, 0.625],
        1e-12,
    );
    close(
        &x.log_softmax(1).unwrap().to_vec_f64().unwrap(),
        &[-(8f64.ln()), (0.25f64).ln(), (0.625f64).ln()],
        1e-12,
    );
    // Along axis 0 of [2, 2]: columns [0, ln 3] and [1, 1] give [1/4, 3/4] and [1/2, 1/2].
    let y = t(&[0.0, 1.0, 3f64.ln(), 1.0], &[2, 2]).softmax(0).unwrap();
    close(&y.to_vec_f64().unwrap(), &[0.25, 0.5, 0.75, 0.5], 1e-12);
}

#[test]
fn large_logits_do_not_overflow() {
    let x =
        Tensor::from_f64_slice(&[1000.0, 1000.0, -1000.0], [3], DType::F32, &Device::Cpu).unwrap();
    close(
        &x.softmax(0).unwrap().to_vec_f64().unwrap(),
        &[0.5, 0.5, 0.0],
        1e-6,
    );
    close(
        &x.log_softmax(0).unwrap().to_vec_f64().unwrap(),
        &[-(2f64.ln()), -(2f64.ln()), -2000.0 - 2f64.ln()],
        1e-6,
    );
}

#[test]
fn strided_lanes_match_contiguous_ones() {
    // Softmax over axis 1 of [2, 5, 3] equals softmax over the last axis of its transpose.
    let x = Tensor::randn([2, 5, 3], 1.0, 7, DType::F64, &Device::Cpu).unwrap();
    let a = x.softmax(1).unwrap();
    let b = x
        .transpose(1, 2)
        .unwrap()
        .softmax(-1)
        .unwrap()
        .transpose(1, 2)
        .unwrap();
    close(&a.to_vec_f64().unwrap(), &b.to_vec_f64().unwrap(), 1e-12);
}

#[test]
fn bad_axes_are_errors() {
    let x = t(&[1.0, 2.0], &[2]);
    assert!(x.softmax(1).is_err());
    assert!(x.log_softmax(-2).is_err());
}

#[test]
fn gradients_match_finite_differences() {
    for case in super::gradcheck_cases() {
        let r = case.run(&Device::Cpu).unwrap();
        assert!(r.passed(), "{}", r.row());
    }
}
